// Search as you type: the search box is an ARIA 1.2 combobox over /api/suggest, in groups:
// completions (searched when taken), products with their picture and price (taking one opens
// the product), the categories and brands of the products whose titles hold the words, with
// how many (taking one searches the words in it), and "See all N results" (N: the count of the
// live results below, once they are for what is typed), kept in view at the foot of the list.
// Down/Up move through the options (the input keeps focus;
// aria-activedescendant names the option), Enter takes the highlighted one, Escape closes the
// list, a click takes one. Without JavaScript the box is a plain search field.
(() => {
  const input = document.getElementById("q");
  const list = document.getElementById("q-suggestions");
  if (!input || !list) return;
  // looked up when needed: Back and Forward replace the form below the header with a saved copy
  const form = () => document.getElementById(input.getAttribute("form"));
  const KINDS = { query: "Popular search", brand: "Brand", category: "Category", product: "Product" };
  let active = -1;
  let pending = null;
  let timer = null;

  const options = () => Array.from(list.querySelectorAll("[role=option]"));

  function close() {
    // a list on its way (typed just before Enter, Escape or leaving the box) is not shown
    clearTimeout(timer);
    if (pending) pending.abort();
    list.hidden = true;
    list.replaceChildren();
    input.setAttribute("aria-expanded", "false");
    input.removeAttribute("aria-activedescendant");
    active = -1;
  }

  function highlight(index) {
    const all = options();
    if (!all.length) return;
    active = (index + all.length) % all.length;
    all.forEach((option, i) => option.setAttribute("aria-selected", String(i === active)));
    input.setAttribute("aria-activedescendant", all[active].id);
    all[active].scrollIntoView({ block: "nearest" });
  }

  function choose(option) {
    close();
    if (option.dataset.href) { window.location.assign(option.dataset.href); return; }
    input.value = option.dataset.value;
    if (form()) form().requestSubmit();
  }

  function option(id, parts, data) {
    const item = document.createElement("li");
    item.id = `q-suggestion-${id}`;
    item.setAttribute("role", "option");
    item.setAttribute("aria-selected", "false");
    Object.assign(item.dataset, data);
    item.append(...parts);
    // mousedown, not click: the input must not lose focus before the choice is taken
    item.addEventListener("mousedown", (event) => { event.preventDefault(); choose(item); });
    return item;
  }

  function span(className, text) {
    const part = document.createElement("span");
    part.className = className;
    part.textContent = text;
    return part;
  }

  function group(label, items) {
    if (!items.length) return [];
    const heading = document.createElement("li");
    heading.setAttribute("role", "presentation");
    heading.className = "group";
    heading.textContent = label;
    return [heading, ...items];
  }

  function productPart(p) {
    let picture;
    if (p.image_url) {
      picture = document.createElement("img");
      picture.src = p.image_url;
      picture.alt = "";
      picture.width = 40;
      picture.height = 40;
      picture.loading = "lazy";
    } else {
      picture = span("thumb-none", "");
      picture.setAttribute("aria-hidden", "true");
    }
    picture.classList.add("thumb");
    return [picture, span("title", p.title), span("price", p.price_shown)];
  }

  // the live results' count, when they are for what the box holds (typing.js keeps them in step)
  function resultsCount(typed) {
    const results = document.getElementById("results");
    if (!results || results.dataset.q?.trim() !== typed.trim() || results.dataset.count === undefined) return null;
    return Number(results.dataset.count);
  }

  function seeAllText(typed) {
    const count = resultsCount(typed);
    if (count === null) return `See all results for “${typed.trim()}”`;
    return `See all ${count} result${count === 1 ? "" : "s"} for “${typed.trim()}”`;
  }

  function show(body, typed) {
    list.replaceChildren();
    active = -1;
    input.removeAttribute("aria-activedescendant");
    let n = 0;
    const base = `${window.location.pathname}?`;
    const words = body.suggestions.filter((s) => s.kind !== "product")
      .map((s) => option(n++, [span("text", s.text), span("kind", KINDS[s.kind] || s.kind)], { value: s.text }));
    const products = body.products
      .map((p) => option(n++, productPart(p), { href: p.url, value: p.title, kind: "product" }));
    // a group narrows the words typed to it; its count: the products whose titles hold them
    const groups = (name, items) => items.map((g) => option(n++,
      [span("text", g.text), span("count", `${g.count}${g.count_more ? "+" : ""}`)],
      { href: `${base}${new URLSearchParams({ q: typed.trim(), [name]: g.text })}`, value: g.text }));
    const entries = [
      ...words,
      ...group("Products", products),
      ...group("Categories", groups("category", body.categories)),
      ...group("Brands", groups("brand", body.brands)),
    ];
    if (entries.length) {
      entries.push(option(n++, [span("see-all", seeAllText(typed))], { value: typed.trim(), kind: "all" }));
    }
    list.append(...entries);
    list.hidden = entries.length === 0;
    input.setAttribute("aria-expanded", String(entries.length > 0));
  }

  // the live results came in: "See all" says their count
  document.body.addEventListener("htmx:afterSettle", () => {
    const all = list.querySelector("[data-kind=all] .see-all");
    if (all && !list.hidden) all.textContent = seeAllText(input.value);
  });

  async function fetchSuggestions() {
    const typed = input.value;
    if (!typed.trim()) { close(); return; }
    if (pending) pending.abort();
    pending = new AbortController();
    try {
      const response = await fetch(`/api/suggest?q=${encodeURIComponent(typed)}`, { signal: pending.signal });
      if (!response.ok) { close(); return; }
      const body = await response.json();
      if (input.value === typed && document.activeElement === input) show(body, typed);
    } catch (error) {
      if (error.name !== "AbortError") close();
    }
  }

  input.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(fetchSuggestions, 120);
  });
  input.addEventListener("keydown", (event) => {
    const open = !list.hidden;
    if (event.key === "ArrowDown") {
      event.preventDefault();
      if (open) highlight(active + 1); else fetchSuggestions();
    } else if (event.key === "ArrowUp" && open) {
      event.preventDefault();
      highlight(active < 0 ? -1 : active - 1); // from the box: the last option ("See all")
    } else if (event.key === "Enter" && open && active >= 0) {
      event.preventDefault();
      choose(options()[active]);
    } else if (event.key === "Escape" && open) {
      event.preventDefault();
      close();
    } else if (event.key === "Enter") {
      close();
    }
  });
  input.addEventListener("blur", () => setTimeout(close, 0));
  // Back or Forward: the list was for what the box held before
  document.body.addEventListener("htmx:historyRestore", () => {
    clearTimeout(timer);
    close();
  });
})();
