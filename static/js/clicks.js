// Result clicks: a beacon records the click without delaying the shopper, and the link goes
// straight to the product. Without JavaScript the link's own href (a recording redirect) is used.
document.addEventListener("click", (event) => {
  const link = event.target.closest("a[data-direct]");
  if (!link) return;
  const body = JSON.stringify({
    search_id: link.dataset.search,
    product_id: Number(link.dataset.product),
    position: Number(link.dataset.position),
  });
  if (navigator.sendBeacon && navigator.sendBeacon("/api/clicks", new Blob([body], { type: "application/json" }))) {
    link.href = link.dataset.direct;
  }
});
