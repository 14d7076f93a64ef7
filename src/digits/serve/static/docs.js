// The API's description, rendered from /openapi.json without any library (the page works offline).
"use strict";

(async function () {
  const main = document.getElementById("routes");
  const element = (tag, text, className) => {
    const e = document.createElement(tag);
    if (text !== undefined) e.textContent = text;
    if (className) e.className = className;
    return e;
  };
  let spec;
  try {
    spec = await (await fetch("/openapi.json")).json();
  } catch (error) {
    main.textContent = `The description could not be loaded (${error.message}).`;
    return;
  }
  main.textContent = "";
  for (const [path, methods] of Object.entries(spec.paths)) {
    for (const [method, op] of Object.entries(methods)) {
      const section = element("section", undefined, "pad route");
      const title = element("h2");
      title.append(element("code", `${method.toUpperCase()} ${path}`));
      section.append(title);
      if (op.summary) section.append(element("p", op.summary, "summary"));
      if (op.description) section.append(element("p", op.description));
      const params = op.parameters || [];
      if (params.length) {
        section.append(element("h3", "Query parameters"));
        const list = element("ul");
        for (const p of params) {
          const item = element("li");
          item.append(element("code", p.name), ` ${p.description || ""}`);
          list.append(item);
        }
        section.append(list);
      }
      const body = op.requestBody && op.requestBody.content;
      if (body) {
        section.append(element("h3", "Body, one of"));
        const list = element("ul");
        for (const [type, media] of Object.entries(body)) {
          const item = element("li");
          item.append(element("code", type));
          const props = media.schema && media.schema.properties;
          if (props) {
            const fields = Object.entries(props).map(([name, s]) => `${name} (${s.type}${s.description ? `: ${s.description}` : ""})`);
            item.append(`: ${fields.join(", ")}`);
          }
          list.append(item);
        }
        section.append(list);
      }
      main.append(section);
    }
  }
})();
