// Suggestions as you type: the search box is an ARIA 1.2 combobox over /api/suggest.
// Down/Up move through the list (the input keeps focus; aria-activedescendant names the
// option), Enter takes the highlighted suggestion and searches it, Escape closes the list,
// a click takes a suggestion. Without JavaScript the box is a plain search field.
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

  function choose(text) {
    input.value = text;
    close();
    if (form()) form().requestSubmit();
  }

  function show(suggestions) {
    list.replaceChildren();
    active = -1;
    input.removeAttribute("aria-activedescendant");
    suggestions.forEach((s, i) => {
      const option = document.createElement("li");
      option.id = `q-suggestion-${i}`;
      option.setAttribute("role", "option");
      option.setAttribute("aria-selected", "false");
      option.dataset.value = s.text;
      const text = document.createElement("span");
      text.textContent = s.text;
      const kind = document.createElement("span");
      kind.className = "kind";
      kind.textContent = KINDS[s.kind] || s.kind;
      option.append(text, kind);
      // mousedown, not click: the input must not lose focus before the choice is taken
      option.addEventListener("mousedown", (event) => { event.preventDefault(); choose(s.text); });
      list.append(option);
    });
    list.hidden = suggestions.length === 0;
    input.setAttribute("aria-expanded", String(suggestions.length > 0));
  }

  async function fetchSuggestions() {
    const typed = input.value;
    if (!typed.trim()) { close(); return; }
    if (pending) pending.abort();
    pending = new AbortController();
    try {
      const response = await fetch(`/api/suggest?q=${encodeURIComponent(typed)}`, { signal: pending.signal });
      if (!response.ok) { close(); return; }
      const body = await response.json();
      if (input.value === typed && document.activeElement === input) show(body.suggestions);
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
      highlight(active - 1);
    } else if (event.key === "Enter" && open && active >= 0) {
      event.preventDefault();
      choose(options()[active].dataset.value);
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
