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
// replaces what was in it, unless the shopper is typing there; Back and Forward always.
const boxFollowResults = (always) => {
  const results = document.getElementById("results");
  const box = document.getElementById("q");
  if (results && box && (always || document.activeElement !== box) && "q" in results.dataset) {
    box.value = results.dataset.q;
  }
};
document.body.addEventListener("htmx:afterSettle", () => boxFollowResults(false));
document.body.addEventListener("htmx:historyRestore", () => boxFollowResults(true));

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

// When a change to the filters searches (the form's "search-update" trigger): a checkbox at once;
// the sort when it is committed (a click, or Enter or leaving it after the arrow keys moved it: an
// arrow key on a closed list changes it at each press); the price range once focus leaves the pair
// of fields, so that a minimum and a maximum are typed whole (Enter submits them too). Plain
// listeners, not htmx trigger filters, which need eval and the Content-Security-Policy forbids it.
// They listen on the document and find the form when they need it: Back and Forward put a saved
// copy of the page in place of the one they were first given.
(() => {
  if (!window.htmx) return;
  const inForm = (target) => target && target.closest && target.closest("#search-form");
  const update = () => {
    const form = document.getElementById("search-form");
    if (form) htmx.trigger(form, "search-update");
  };
  let sortKeyed = false; // the sort was changed from the keyboard and not yet committed
  const isSort = (target) => inForm(target) && target.name === "sort" && target.tagName === "SELECT";
  document.addEventListener("keydown", (event) => {
    if (!isSort(event.target)) return;
    if (event.key === "Enter" && sortKeyed) {
      event.preventDefault();
      sortKeyed = false;
      update();
    } else if (event.key.startsWith("Arrow") || ["Home", "End", "PageUp", "PageDown"].includes(event.key) || event.key.length === 1) {
      sortKeyed = true;
    }
  });
  document.addEventListener("change", (event) => {
    if (!inForm(event.target)) return;
    if (isSort(event.target) && sortKeyed) return; // committed by Enter or by leaving it
    if (!event.target.closest(".price-range")) update();
  });
  document.addEventListener("focusout", (event) => {
    if (!inForm(event.target)) return;
    if (isSort(event.target) && sortKeyed) {
      sortKeyed = false;
      update();
      return;
    }
    const range = event.target.closest(".price-range");
    if (range && !(event.relatedTarget && event.relatedTarget.closest(".price-range"))) update();
  });
  document.addEventListener("mousedown", (event) => {
    if (isSort(event.target)) sortKeyed = false; // a pointer's choice is its commit
  });
})();

// A single letter typed is not searched yet: it would show a page of nothing on the way to a word.
document.body.addEventListener("htmx:confirm", (event) => {
  const trigger = event.detail.triggeringEvent;
  const box = document.getElementById("q");
  if (trigger && trigger.type === "input" && trigger.target === box && box.value.trim().length === 1) {
    event.preventDefault();
  }
});

// The control that changed keeps focus through the swap that replaces the results around it (a
// filter's checkbox, the sort, a price field: found again by its name and value; a price bucket's
// link, or wherever Tab had moved to as the sort or a price was left: by its place among the
// results' controls), without scrolling, so a keyboard's next Tab goes on from it and a phone stays
// where the shopper is.
(() => {
  const CONTROLS = "a[href], input, select, button, [tabindex]";
  let kept = null;
  document.body.addEventListener("htmx:beforeSwap", (event) => {
    const active = document.activeElement;
    const target = event.detail.target;
    kept = null;
    if (!target || target.id !== "results" || !active || active === target || !target.contains(active)) return;
    const from = event.detail.requestConfig && event.detail.requestConfig.elt;
    if (from && from.closest && from.closest(".pager")) return; // another page starts at its top
    // unnamed (a bucket's link): its place among its own kind ("a.bucket"), else among all controls
    const kind = active.tagName.toLowerCase() + (active.classList.length ? "." + CSS.escape(active.classList[0]) : "");
    kept = {
      name: active.name || null,
      value: active.type === "checkbox" ? active.value : null,
      kind,
      nth: Array.from(target.querySelectorAll(kind)).indexOf(active),
      index: Array.from(target.querySelectorAll(CONTROLS)).indexOf(active),
      y: window.scrollY,
    };
  });
  document.body.addEventListener("htmx:afterSettle", () => {
    if (!kept) return;
    const { name, value, kind, nth, index, y } = kept;
    kept = null;
    const now = document.activeElement;
    if (now && now !== document.body && document.contains(now)) return; // the shopper has moved on: leave focus there
    const results = document.getElementById("results");
    if (!results) return;
    let again = null;
    if (name) {
      again = results.querySelector(`[name="${CSS.escape(name)}"]` + (value === null ? "" : `[value="${CSS.escape(value)}"]`));
    }
    if (!again && !name && nth >= 0) again = results.querySelectorAll(kind)[nth] || null;
    if (!again && index >= 0) again = results.querySelectorAll(CONTROLS)[index] || null;
    if (again) {
      again.focus({ preventScroll: true });
      window.scrollTo({ top: y, behavior: "instant" });
    }
  });
})();

// "Skip to results" lands on the list of products (the next Tab is the first one); when a search
// has none, on the results themselves.
document.addEventListener("click", (event) => {
  const skip = event.target.closest && event.target.closest(".skip-link");
  if (!skip) return;
  const id = skip.getAttribute("href").slice(1);
  const target = document.getElementById(id) || document.getElementById("results");
  if (target && target.id !== id) {
    event.preventDefault();
    target.focus();
  }
});

// Phones: the filters drawer (a CSS switch, #show-filters, so that it opens without JavaScript;
// its buttons need JavaScript, and without it labels of the switch stand in for them). Opening
// it moves focus into it and keeps Tab inside it; Escape or its buttons close it and give focus
// back to the switch, which Enter opens as Space does; a filter changed inside it keeps the
// drawer where it was scrolled to through the swap that replaces it.
(() => {
  const toggle = () => document.getElementById("show-filters");
  const drawer = () => document.getElementById("filters");
  const setOpen = (open) => {
    const input = toggle();
    if (!input || input.checked === open) return;
    input.checked = open;
    input.dispatchEvent(new Event("change", { bubbles: true }));
  };
  const focusable = () => Array.from(drawer()?.querySelectorAll("a[href], button, input, select") || [])
    .filter((e) => e.offsetParent !== null && !e.disabled);
  document.addEventListener("change", (event) => {
    if (event.target !== toggle()) return;
    if (event.target.checked) drawer()?.querySelector(".drawer-close")?.focus({ preventScroll: true });
    else event.target.focus({ preventScroll: true });
  });
  document.addEventListener("click", (event) => {
    if (event.target.closest?.("[data-drawer-close]")) setOpen(false);
  });
  document.addEventListener("keydown", (event) => {
    const input = toggle();
    if (!input) return;
    if (event.target === input && event.key === "Enter") {
      event.preventDefault();
      setOpen(!input.checked);
      return;
    }
    const open = input.checked && drawer() && getComputedStyle(drawer()).position === "fixed";
    if (!open) return;
    if (event.key === "Escape") {
      event.preventDefault();
      setOpen(false);
    } else if (event.key === "Tab") {
      const all = focusable();
      if (!all.length) return;
      const at = all.indexOf(document.activeElement);
      if (event.shiftKey && at <= 0) { event.preventDefault(); all[all.length - 1].focus(); }
      else if (!event.shiftKey && (at === -1 || at === all.length - 1)) { event.preventDefault(); all[0].focus(); }
    }
  });
  let scrolled = 0;
  document.body.addEventListener("htmx:beforeSwap", () => { scrolled = drawer()?.scrollTop || 0; });
  document.body.addEventListener("htmx:afterSwap", () => {
    const now = drawer();
    if (now && toggle()?.checked) now.scrollTop = scrolled;
  });
})();
