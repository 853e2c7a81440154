// A phone's photo is megabytes and 12 MP or more; a photo search keeps 512 px of it. Scaled down
// here before it is sent, it uploads in a moment on a phone's connection and stays under the
// shop's photo limit (SEARCH_PHOTO_MAX_PIXELS). Without this script the photo goes as it is.
(() => {
  const EDGE = 1024;
  const form = document.getElementById("photo-form");
  const input = form && form.querySelector("input[type=file]");
  if (!input || !window.createImageBitmap || !window.DataTransfer) return;
  let pending = null;

  async function smaller(file) {
    let bitmap;
    try {
      bitmap = await createImageBitmap(file); // EXIF orientation applied
    } catch (error) {
      return null; // not an image the browser reads: the server says what is wrong with it
    }
    const scale = EDGE / Math.max(bitmap.width, bitmap.height);
    if (scale >= 1) {
      bitmap.close();
      return null;
    }
    const canvas = document.createElement("canvas");
    canvas.width = Math.max(1, Math.round(bitmap.width * scale));
    canvas.height = Math.max(1, Math.round(bitmap.height * scale));
    canvas.getContext("2d").drawImage(bitmap, 0, 0, canvas.width, canvas.height);
    bitmap.close();
    const blob = await new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", 0.9));
    return blob && new File([blob], file.name.replace(/\.[^./]*$/, "") + ".jpg", { type: "image/jpeg" });
  }

  input.addEventListener("change", () => {
    const file = input.files[0];
    if (!file || !file.type.startsWith("image/")) return;
    const done = smaller(file)
      .then((scaled) => {
        if (scaled && input.files[0] === file) {
          const files = new DataTransfer();
          files.items.add(scaled);
          input.files = files.files;
        }
      })
      .catch(() => {}) // the photo goes as it is
      .finally(() => {
        if (pending === done) pending = null;
      });
    pending = done;
  });

  // "Find similar" pressed while the photo is still being scaled: send it once it is ready
  form.addEventListener("htmx:confirm", (event) => {
    if (!pending) return;
    event.preventDefault();
    pending.then(() => event.detail.issueRequest());
  });
})();
