// Behaviour that pages would otherwise put in inline attributes, which the Content-Security-Policy
// forbids: bar widths from data-width (tenths of a percent), selects and forms that submit on change,
// forms that only hold settings for scripts (never submitted), and forms whose button waits once sent.
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
    const form = event.target;
    if (!(form instanceof HTMLFormElement)) return;
    if (form.hasAttribute("data-no-submit")) {
      event.preventDefault();
      return;
    }
    // A form marked data-busy="Queuing…" posts to a page that takes a while (a job's checks, an upload):
    // its button says so and waits, so a second click cannot send it twice. After the submit event, so
    // that the button's own name and value still go with the form.
    if (form.dataset.busy && !event.defaultPrevented) {
      const button = event.submitter || form.querySelector("button[type=submit], button:not([type])");
      if (button) {
        setTimeout(() => {
          button.disabled = true;
          button.textContent = form.dataset.busy;
        }, 0);
      }
    }
  });
  // Back to the page from the cache (the browser's back button): its buttons work again.
  window.addEventListener("pageshow", (event) => {
    if (!event.persisted) return;
    document.querySelectorAll("form[data-busy] button[disabled]").forEach((b) => { b.disabled = false; });
  });
})();
