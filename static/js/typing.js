// Searches typed keystroke by keystroke: each request says whether it starts a run of keystrokes
// or continues one (X-Search-Typing), so that the server adds one history entry per search the
// shopper settles on (the rest replace it) and logs only those. A pause as long as the server's
// SEARCH_SETTLE_SECONDS (data-settle-ms on <body>) starts a new run.
(() => {
  const settleMs = Number(document.body.dataset.settleMs || 2000);
  let lastTyping = -Infinity;
  document.body.addEventListener("htmx:configRequest", (event) => {
    const trigger = event.detail.triggeringEvent;
    const typed = trigger && trigger.type === "input" && trigger.target && trigger.target.id === "q";
    if (!typed) {
      lastTyping = -Infinity;
      return;
    }
    const now = performance.now();
    event.detail.headers["X-Search-Typing"] = now - lastTyping < settleMs ? "continue" : "start";
    lastTyping = now;
  });
})();

// The box shows the search the results are for: a photo search (or a link to another query)
// replaces what was in it, unless the shopper is typing there.
document.body.addEventListener("htmx:afterSettle", () => {
  const results = document.getElementById("results");
  const box = document.getElementById("q");
  if (results && box && document.activeElement !== box && "q" in results.dataset) {
    box.value = results.dataset.q;
  }
});

// A request the server refuses (too many requests, too large) says why where the shopper looks,
// instead of leaving the page as it was; the next search that answers clears it.
document.body.addEventListener("htmx:responseError", (event) => {
  const xhr = event.detail.xhr;
  const plain = (xhr.getResponseHeader("Content-Type") || "").startsWith("text/plain");
  const text = plain && xhr.responseText ? xhr.responseText.slice(0, 300) : "Something went wrong. Please try again.";
  let notice = document.getElementById("request-error");
  if (!notice) {
    notice = document.createElement("p");
    notice.id = "request-error";
    notice.className = "notice error";
    notice.setAttribute("role", "alert");
    document.querySelector("main").prepend(notice);
  }
  notice.textContent = text;
});
document.body.addEventListener("htmx:afterSettle", () => document.getElementById("request-error")?.remove());

// When a change to the filters searches (the form's "search-update" trigger): a checkbox or the
// sort at once; the price range once focus leaves the pair of fields, so that a minimum and a
// maximum are typed whole (Enter submits them too). Plain listeners, not htmx trigger filters,
// which need eval and the Content-Security-Policy forbids it.
(() => {
  const form = document.getElementById("search-form");
  if (!form || !window.htmx) return;
  form.addEventListener("change", (event) => {
    if (!event.target.closest(".price-range")) htmx.trigger(form, "search-update");
  });
  form.addEventListener("focusout", (event) => {
    const range = event.target.closest(".price-range");
    if (range && !(event.relatedTarget && event.relatedTarget.closest(".price-range"))) {
      htmx.trigger(form, "search-update");
    }
  });
})();
