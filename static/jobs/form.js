// The job forms show the fields of the chosen method only. Every field that concerns some methods says
// which (data-methods="lora qlora"); without this script they all show, each labelled "applies to: ...",
// and the server ignores the values of the methods not chosen. A fieldset left with no field hides too.
(function () {
  "use strict";

  function show(form) {
    const chosen = form.querySelector('input[name="method"]:checked');
    const method = chosen ? chosen.value : null;
    form.querySelectorAll("[data-methods]").forEach((field) => {
      field.hidden = method !== null && !field.dataset.methods.split(" ").includes(method);
    });
    form.querySelectorAll("fieldset").forEach((group) => {
      const fields = [...group.querySelectorAll(".field")];
      group.hidden = fields.length > 0 && fields.every((field) => field.hidden);
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    document.querySelectorAll("form[data-method-form]").forEach((form) => {
      form.classList.add("shows-chosen-method");
      form.addEventListener("change", (event) => {
        if (event.target.name === "method") show(form);
      });
      show(form);
    });
  });
})();
