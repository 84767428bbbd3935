/**
 * Images attached to the next prompt: by the file picker, by pasting, or by dropping them
 * on the composer. Each shows as a removable thumbnail chip until the prompt is sent; it
 * is read once into a data: URL, the form the API takes (an OpenAI-style image part).
 *
 * Size is bounded here, before any upload: a photo straight off a phone can be tens of
 * megabytes, and the server refuses a body over its `max_body` (8 MiB by default) for
 * every pane at once, which would be a worse place to learn it.
 */

import { el } from "./dom.js";

export const MAX_IMAGE_BYTES = 5 * 1024 * 1024;

const megabytes = (n) => (n / (1024 * 1024)).toFixed(1).replace(/\.0$/, "") + " MB";

/** Why `file` cannot be attached, or null. */
export function refusal(file) {
  if (!file.type.startsWith("image/")) return file.name + " is not an image.";
  if (file.size > MAX_IMAGE_BYTES) {
    return file.name + " is " + megabytes(file.size) + ": images up to "
      + megabytes(MAX_IMAGE_BYTES) + " can be attached.";
  }
  return null;
}

function readDataUrl(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(String(reader.result));
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}

/** A thumbnail with the image's name; `remove` (if given) adds a labelled × button. */
export function imageChip(image, remove) {
  const li = el("li", "attachment");
  if (image.dataUrl) {
    const thumb = el("img", "attachment-thumb");
    thumb.src = image.dataUrl;
    thumb.alt = "";
    li.append(thumb);
  }
  li.append(el("span", "attachment-name", image.name));
  li.title = image.name + " (" + megabytes(image.size) + ")";
  if (remove) {
    const x = el("button", "attachment-remove", "×");
    x.type = "button";
    x.setAttribute("aria-label", "Remove image " + image.name);
    x.addEventListener("click", remove);
    li.append(x);
  }
  return li;
}

export class Attachments {
  /** `tray`: the list the chips go in; `notify(message)` tells the user what was refused. */
  constructor(tray, notify) {
    this.tray = tray;
    this.notify = notify;
    this.images = []; // {name, type, size, dataUrl}
    this.reading = 0;
    this.render();
  }

  /** Attaches the image files among `files` (a FileList or an array). */
  async add(files) {
    for (const file of files) {
      const why = refusal(file);
      if (why) {
        this.notify(why);
        continue;
      }
      this.reading++;
      try {
        const dataUrl = await readDataUrl(file);
        this.images.push({ name: file.name || "pasted image", type: file.type, size: file.size, dataUrl });
      } catch {
        this.notify("Could not read " + file.name + ".");
      } finally {
        this.reading--;
      }
      this.render();
    }
  }

  /** Takes the attached images (for a prompt being sent) and empties the tray. */
  take() {
    const images = this.images;
    this.set([]);
    return images;
  }

  set(images) {
    this.images = images.slice();
    this.render();
  }

  render() {
    this.tray.replaceChildren(
      ...this.images.map((image, i) =>
        imageChip(image, () => {
          this.images.splice(i, 1);
          this.render();
        }),
      ),
    );
    this.tray.hidden = !this.images.length;
  }
}
