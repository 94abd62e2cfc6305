// The interactive API docs: every operation of /openapi.json with its parameters, request
// body and answers, and a form that sends it to this server and shows the answer.
"use strict";

const METHODS = ["get", "post", "put", "patch", "delete"];
let spec = null;

function refName(ref) {
  return ref.split("/").pop();
}

function resolve(schema) {
  return schema && schema.$ref ? spec.components.schemas[refName(schema.$ref)] || {} : schema || {};
}

// A schema in one line: `{user_id: integer, name: string | null, genres: [string]}`, with
// named schemas linked to their section below.
function schemaView(schema) {
  if (!schema) return "";
  if (schema.$ref) return el("a", { href: "#schema-" + refName(schema.$ref) }, refName(schema.$ref));
  for (const key of ["oneOf", "anyOf", "allOf"]) {
    if (schema[key]) return joined(schema[key].map(schemaView), key === "allOf" ? " & " : " | ");
  }
  if (schema.enum) return schema.enum.map((v) => JSON.stringify(v)).join(" | ");
  const types = Array.isArray(schema.type) ? schema.type : [schema.type || (schema.properties ? "object" : "any")];
  const parts = types.map((type) => {
    if (type === "array") return el("span", {}, "[", schemaView(schema.items), "]");
    if (type === "object" && schema.properties) {
      const required = schema.required || [];
      const fields = Object.entries(schema.properties).map(([name, prop]) =>
        el("span", { title: prop.description || null }, name + (required.includes(name) ? "" : "?") + ": ", schemaView(prop)),
      );
      return el("span", {}, "{", joined(fields, ", "), "}");
    }
    return type;
  });
  if (schema.nullable) parts.push("null");
  return joined(parts, " | ");
}

function joined(parts, separator) {
  const out = el("span", {});
  parts.forEach((part, i) => out.append(...(i ? [separator] : []), part));
  return out;
}

// An example value of a schema, to start a request body from.
function example(schema, depth) {
  const s = resolve(schema);
  if (s.example !== undefined) return s.example;
  if ((depth || 0) > 4) return null;
  const type = Array.isArray(s.type) ? s.type[0] : s.type || (s.properties ? "object" : "");
  if (type === "object") {
    const out = {};
    for (const [name, prop] of Object.entries(s.properties || {})) out[name] = example(prop, (depth || 0) + 1);
    return out;
  }
  return { integer: 1, number: 1.0, string: "", boolean: false, array: [] }[type] ?? null;
}

function operation(path, method, op) {
  const params = op.parameters || [];
  const inputs = {};
  const rows = params.map((p) => {
    inputs[p.name] = el("input", { name: p.name, placeholder: p.required ? "required" : "optional", autocomplete: "off" });
    return el(
      "tr",
      {},
      el("td", {}, el("code", {}, p.name), p.required ? el("span", { class: "required" }, " *") : null),
      el("td", {}, p.in),
      el("td", {}, schemaView(p.schema)),
      el("td", {}, p.description || ""),
      el("td", {}, inputs[p.name]),
    );
  });
  const bodySchema = op.requestBody && op.requestBody.content && op.requestBody.content["application/json"];
  const body = bodySchema
    ? el("textarea", { rows: 3, spellcheck: "false", class: "body" }, JSON.stringify(example(bodySchema.schema), null, 1))
    : null;
  const token = op.security ? el("input", { type: "password", placeholder: "bearer token", autocomplete: "off" }) : null;
  const answer = el("pre", { class: "answer", hidden: true });
  const send = async () => {
    const query = new URLSearchParams();
    for (const p of params) {
      const value = inputs[p.name].value.trim();
      if (value !== "" && p.in === "query") query.set(p.name, value);
    }
    const headers = {};
    if (body) headers["Content-Type"] = "application/json";
    if (token && token.value) headers["Authorization"] = "Bearer " + token.value;
    const url = path + (query.toString() ? "?" + query : "");
    answer.hidden = false;
    answer.textContent = method.toUpperCase() + " " + url + " …";
    try {
      const response = await fetch(url, { method: method.toUpperCase(), headers, body: body ? body.value : undefined });
      const text = await response.text();
      let shown = text;
      try {
        shown = JSON.stringify(JSON.parse(text), null, 2);
      } catch (_) {}
      answer.dataset.status = response.status;
      answer.textContent = method.toUpperCase() + " " + url + "\n" + response.status + " " + response.statusText + "\n\n" + shown;
    } catch (e) {
      answer.textContent = String(e);
    }
  };
  const responses = Object.entries(op.responses || {}).map(([code, r]) => {
    const content = r.content && (r.content["application/json"] || Object.values(r.content)[0]);
    return el("li", {}, el("code", {}, code), " ", r.description || "", content && content.schema ? el("div", { class: "schema" }, schemaView(content.schema)) : null);
  });
  return el(
    "details",
    { class: "op", id: method + "-" + path.replace(/[^a-z0-9]+/gi, "-") },
    el("summary", {}, el("span", { class: "method " + method }, method.toUpperCase()), el("code", { class: "path" }, path), el("span", { class: "summary" }, op.summary || "")),
    op.description ? el("p", {}, op.description) : null,
    rows.length ? el("table", {}, el("tr", {}, ["name", "in", "type", "description", "value"].map((h) => el("th", {}, h))), rows) : null,
    body ? el("div", {}, el("h4", {}, "Body ", schemaView(bodySchema.schema)), body) : null,
    token ? el("div", {}, el("h4", {}, "Authorization"), token) : null,
    el("button", { type: "button", class: "send", onclick: send }, "Send"),
    answer,
    el("h4", {}, "Answers"),
    el("ul", { class: "responses" }, responses),
  );
}

async function start() {
  try {
    spec = await api("/openapi.json");
  } catch (e) {
    showStatus("cannot read /openapi.json: " + e.message, true);
    return;
  }
  spec.components = spec.components || {};
  spec.components.schemas = spec.components.schemas || {};
  document.getElementById("version").textContent = spec.info.title + " " + spec.info.version + " · OpenAPI " + (spec.openapi || "");
  document.getElementById("description").textContent = spec.info.description || "";
  const operations = document.getElementById("operations");
  for (const [path, item] of Object.entries(spec.paths || {})) {
    for (const method of METHODS) if (item[method]) operations.append(operation(path, method, item[method]));
  }
  // `/docs#get--popular` opens that operation.
  const linked = location.hash && document.getElementById(location.hash.slice(1));
  if (linked && linked.classList.contains("op")) {
    linked.open = true;
    linked.scrollIntoView();
  }
  const schemas = document.getElementById("schemas");
  for (const [name, schema] of Object.entries(spec.components.schemas)) {
    schemas.append(
      el("div", { class: "schema-def", id: "schema-" + name }, el("h3", {}, name), schema.description ? el("p", {}, schema.description) : null, el("code", {}, schemaView(schema))),
    );
  }
}

start();
