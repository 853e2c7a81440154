// The ranking rule form shows the fields its action uses: a product (and a position, for a pin)
// or what the products to boost or bury must have; the query unless the rule is for every search.
(function () {
  "use strict";
  const USES = {
    pin: ["product", "position"],
    hide: ["product"],
    boost: ["field", "attribute", "value", "strength"],
    bury: ["field", "attribute", "value", "strength"],
  };
  const OPTIONAL = ["product", "position", "field", "attribute", "value", "strength"];

  function row(name) {
    return document.querySelector(".form-row.field-" + name) || document.querySelector(".field-" + name);
  }

  function show() {
    const action = document.getElementById("id_action");
    const match = document.getElementById("id_match");
    const field = document.getElementById("id_field");
    const used = USES[action.value] || OPTIONAL;
    for (const name of OPTIONAL) {
      const element = row(name);
      if (!element) continue;
      const wanted = used.includes(name) && (name !== "attribute" || (field && field.value === "attribute"));
      element.hidden = !wanted;
    }
    const query = row("query");
    if (query && match) query.hidden = match.value === "any";
    for (const fieldset of document.querySelectorAll("fieldset.module")) {
      const rows = fieldset.querySelectorAll(".form-row");
      if (rows.length && fieldset.id !== "preview") {
        fieldset.hidden = Array.from(rows).every((r) => r.hidden);
      }
    }
  }

  document.addEventListener("DOMContentLoaded", function () {
    const action = document.getElementById("id_action");
    if (!action) return;
    for (const id of ["id_action", "id_match", "id_field"]) {
      const element = document.getElementById(id);
      if (element) element.addEventListener("change", show);
    }
    show();
  });
})();
