// Building DOM without HTML parsing: everything a peer sent becomes text
// (`textContent`), attributes are set one by one, never `innerHTML`.

/**
 * `el("td", { class: "mono", title: key }, "text", child)`: an element with
 * attributes and children; strings and numbers become text nodes. Event
 * handlers are given as `on: { click: fn }`.
 */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name === "on") {
      for (const [type, fn] of Object.entries(value)) node.addEventListener(type, fn);
    } else if (value === true) {
      node.setAttribute(name, "");
    } else if (value !== false && value !== undefined && value !== null) {
      node.setAttribute(name, String(value));
    }
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** A value as compact JSON text, shortened past `max` characters. */
export function json(value, max = 200) {
  const text = JSON.stringify(value) ?? "undefined";
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

/** A peer id shortened for tables (the full id is in the title). */
export const short = (id) => (id ? id.slice(0, 8) : "—");
