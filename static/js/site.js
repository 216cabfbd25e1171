// Behaviour that pages would otherwise put in inline attributes, which the Content-Security-Policy
// forbids: bar widths from data-width (tenths of a percent), selects and forms that submit on change,
// and forms that only hold settings for scripts (never submitted).
(function () {
  function applyWidths(root) {
    root.querySelectorAll("[data-width]").forEach((el) => {
      el.style.width = Number(el.dataset.width) / 10 + "%";
    });
  }
  document.addEventListener("DOMContentLoaded", () => applyWidths(document));
  // Content htmx swaps in gets its widths too.
  document.addEventListener("htmx:load", (event) => applyWidths(event.target));
  document.addEventListener("change", (event) => {
    const el = event.target;
    if (!(el instanceof HTMLSelectElement || el instanceof HTMLInputElement) || !el.form) return;
    // a select marked data-autosubmit, or any field of a form marked so (the catalog's column boxes)
    if (el.hasAttribute("data-autosubmit") || el.form.hasAttribute("data-autosubmit")) el.form.requestSubmit();
  });
  document.addEventListener("submit", (event) => {
    if (event.target instanceof HTMLFormElement && event.target.hasAttribute("data-no-submit")) event.preventDefault();
  });
})();
