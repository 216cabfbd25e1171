// Next-token explorer: show each slider's value beside it as it moves. The form itself is plain
// htmx (server-rendered partials), so the page also works as a normal form without this script.
document.addEventListener("input", (event) => {
  const input = event.target;
  if (!(input instanceof HTMLInputElement) || input.type !== "range") return;
  const output = document.querySelector(`output[for="${CSS.escape(input.id)}"]`);
  if (output) output.textContent = input.value;
});
