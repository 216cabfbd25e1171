// Tokenizer lab: hovering a chip outlines every chip, in every column, that covers the same characters,
// so one can see how different tokenizers cut the same text. Event delegation keeps it working after
// htmx swaps in new results.
(function () {
  "use strict";
  function overlapping(chip) {
    var start = Number(chip.dataset.start), end = Number(chip.dataset.end);
    var results = document.getElementById("lab-results");
    if (!results || !results.contains(chip)) return [];
    return Array.prototype.filter.call(results.querySelectorAll(".chip[data-start]"), function (other) {
      var s = Number(other.dataset.start), e = Number(other.dataset.end);
      return s < end && start < e || (s === start && e === end);
    });
  }
  function clear() {
    document.querySelectorAll(".chip.hl").forEach(function (c) { c.classList.remove("hl"); });
  }
  document.addEventListener("mouseover", function (event) {
    var chip = event.target.closest && event.target.closest(".chip[data-start]");
    clear();
    if (chip) overlapping(chip).forEach(function (c) { c.classList.add("hl"); });
  });
})();
