// Models > Add a model. A folder upload keeps only the folder's own files (its subfolders are not
// imported, and the server sees each file's name without its folder) and sends the folder's name, which
// names the model when no name is given; while the form uploads, it says so.
(() => {
  const form = document.getElementById("import-form");
  if (!form) return;
  const folder = form.querySelector('input[name="folder"]');
  const folderName = form.querySelector('input[name="folder_name"]');
  folder?.addEventListener("change", () => {
    const files = Array.from(folder.files);
    const own = files.filter((file) => file.webkitRelativePath.split("/").length <= 2);
    if (own.length !== files.length) {
      const kept = new DataTransfer();
      own.forEach((file) => kept.items.add(file));
      folder.files = kept.files;
    }
    if (folderName) folderName.value = files.length ? files[0].webkitRelativePath.split("/")[0] : "";
  });
  form.addEventListener("submit", () => {
    document.getElementById("import-busy")?.removeAttribute("hidden");
  });
})();
