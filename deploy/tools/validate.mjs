// Validates the rendered Kubernetes manifests and the Compose file of deploy/, offline.
//
//   node validate.mjs --help-env ROLE=FILE... [--compose FILE] [--selftest] RENDERED.yaml...
//
// 1. Schemas: every object is built as its model from npm's `kubernetes-models` (Kubernetes),
//    `@kubernetes-models/keda` (KEDA) or `@kubernetes-models/prometheus-operator` and validates
//    itself against the OpenAPI schema it was generated from. Those schemas allow unknown
//    fields, which the API server would drop without a word (a misspelt `readinessProbe` is no
//    probe at all), so every field is also looked up in the models' type declarations.
// 2. Invariants the schemas cannot express (deploy/README.md): each role's container receives
//    every variable its `rythmiq ROLE --help` lists (the --help-env files), from a ConfigMap or a
//    Secret, secrets only from Secrets; no unknown variable; the worker's grace period exceeds
//    its shutdown timeout; the hardening; probes on the ports the services listen on; requests;
//    the autoscaler's trigger.
// 3. With --compose: the Compose file's services use only variables their role knows, and the
//    worker's stop grace period exceeds its shutdown timeout (its schema is checked by
//    check-jsonschema in deploy/check.sh).
// With --selftest, deliberately broken copies of the first manifest must each be rejected.
// Runs from the folder scripts/setup.sh installs its packages into (target/deploy-node).
import { readFileSync, existsSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseAllDocuments, parse as parseYaml } from "yaml";

const here = dirname(fileURLToPath(import.meta.url));
const nodeModules = join(here, "node_modules");

// ---------------------------------------------------------------------------------------------
// Schemas

/** The npm module of an object's model, by its apiVersion. */
function modelModule(apiVersion, kind) {
  const [group, version] = apiVersion.includes("/") ? apiVersion.split("/") : ["", apiVersion];
  if (group === "keda.sh") return `@kubernetes-models/keda/keda.sh/${version}/${kind}`;
  if (group === "monitoring.coreos.com") {
    return `@kubernetes-models/prometheus-operator/monitoring.coreos.com/${version}/${kind}`;
  }
  return group === "" ? `kubernetes-models/${version}/${kind}` : `kubernetes-models/${group}/${version}/${kind}`;
}

/** The members of the interface declared in a model's `.d.ts` file, with each member's type. */
const interfaces = new Map();
function interfaceOf(dtsPath) {
  if (interfaces.has(dtsPath)) return interfaces.get(dtsPath);
  let members = null;
  if (existsSync(dtsPath)) {
    const text = readFileSync(dtsPath, "utf8").replace(/\/\*[\s\S]*?\*\//g, "").replace(/\/\/.*$/gm, "");
    const imports = new Map();
    for (const m of text.matchAll(/import\s*\{([^}]*)\}\s*from\s*"([^"]+)"/g)) {
      for (const name of m[1].split(",").map((s) => s.trim()).filter(Boolean)) {
        const [orig, alias] = name.split(/\s+as\s+/);
        imports.set((alias ?? orig).trim(), m[2]);
      }
    }
    const start = text.search(/export interface I\w+(\s+extends[^{]*)?\s*\{/);
    if (start >= 0) {
      const open = text.indexOf("{", start);
      members = parseMembers(blockAt(text, open), { dir: dirname(dtsPath), imports });
    }
  }
  interfaces.set(dtsPath, members);
  return members;
}

/** The text between the brace at `open` and its match. */
function blockAt(text, open) {
  let depth = 0;
  for (let i = open; i < text.length; i++) {
    if (text[i] === "{") depth++;
    else if (text[i] === "}" && --depth === 0) return text.slice(open + 1, i);
  }
  return text.slice(open + 1);
}

/** `"name"?: Type;` members at the top level of an interface or object-literal type body. */
function parseMembers(body, ctx) {
  const members = new Map();
  let depth = 0;
  let current = "";
  const flush = () => {
    const m = current.trim().match(/^"?([^"?:]+)"?\??\s*:\s*([\s\S]+)$/);
    if (m && !m[1].startsWith("[")) members.set(m[1], { type: m[2].trim(), ctx });
    current = "";
  };
  for (const ch of body) {
    if ("{<(".includes(ch)) depth++;
    if ("}>)".includes(ch)) depth--;
    if (ch === ";" && depth === 0) flush();
    else current += ch;
  }
  flush();
  return members;
}

/** What a member type allows inside it: an interface's members, an element or a map value. */
function shapeOf(type, ctx) {
  type = type.trim();
  const array = type.match(/^Array<([\s\S]+)>$/);
  if (array) return { kind: "array", of: array[1], ctx };
  if (type.startsWith("{")) {
    const body = blockAt(type, 0);
    const map = body.match(/^\s*\[key: string\]\s*:\s*([\s\S]+?);?\s*$/);
    if (map) return { kind: "map", of: map[1], ctx };
    return { kind: "object", members: parseMembers(body, ctx) };
  }
  // An interface, possibly in a union with primitives (IntOrString and the like).
  const name = type.split("|").map((s) => s.trim()).find((s) => ctx.imports.has(s));
  if (name) {
    const spec = ctx.imports.get(name).replace(/\.js$/, "");
    const path = spec.startsWith(".") ? resolve(ctx.dir, `${spec}.d.ts`) : join(nodeModules, `${spec}.d.ts`);
    const members = interfaceOf(path);
    if (members) return { kind: "object", members };
  }
  return { kind: "leaf" };
}

/** Fields the models do not declare, as JSON paths. */
function unknownFields(value, members, path, out) {
  if (value === null || typeof value !== "object" || Array.isArray(value)) return out;
  for (const [key, v] of Object.entries(value)) {
    const member = members.get(key);
    if (!member) {
      out.push(`${path}.${key}`);
      continue;
    }
    walk(v, shapeOf(member.type, member.ctx), `${path}.${key}`, out);
  }
  return out;
}

function walk(value, shape, path, out) {
  if (shape.kind === "object") unknownFields(value, shape.members, path, out);
  else if (shape.kind === "array" && Array.isArray(value)) {
    value.forEach((v, i) => walk(v, shapeOf(shape.of, shape.ctx), `${path}[${i}]`, out));
  } else if (shape.kind === "map" && value && typeof value === "object") {
    for (const [k, v] of Object.entries(value)) walk(v, shapeOf(shape.of, shape.ctx), `${path}.${k}`, out);
  }
}

async function schemaErrors(doc) {
  const where = `${doc.kind ?? "?"}/${doc.metadata?.name ?? "?"}`;
  if (!doc.apiVersion || !doc.kind) return [`${where}: no apiVersion or kind`];
  const spec = modelModule(doc.apiVersion, doc.kind);
  let Model;
  try {
    Model = (await import(spec))[doc.kind];
  } catch {
    return [`${where}: no schema for ${doc.apiVersion} ${doc.kind} (${spec})`];
  }
  if (typeof Model !== "function") return [`${where}: no model ${doc.kind} in ${spec}`];
  const errors = [];
  try {
    new Model(structuredClone(doc)).validate();
  } catch (e) {
    errors.push(`${where}: ${String(e.message ?? e).split("\n").slice(0, 6).join(" | ")}`);
  }
  const members = interfaceOf(join(nodeModules, `${spec}.d.ts`));
  if (!members) errors.push(`${where}: no type declarations for ${spec}`);
  else for (const f of unknownFields(doc, members, "", [])) errors.push(`${where}: unknown field ${f.slice(1)}`);
  return errors;
}

// ---------------------------------------------------------------------------------------------
// Invariants

// Read by no `--help` but meant: the OpenTelemetry SDK's own variable, and the scaler's login
// (KEDA reads it from the worker's environment).
const EXTRA_VARIABLES = new Set(["OTEL_EXPORTER_OTLP_ENDPOINT", "RYTHMIQ_SCALER_DATABASE_URL"]);
// Values that must only ever come from a Secret.
const SECRET_VARIABLES = new Set([
  "DATABASE_URL",
  "RYTHMIQ_JWT_SECRET",
  "RYTHMIQ_MASTER_KEY",
  "RYTHMIQ_MASTER_KEYS_OLD",
  "RYTHMIQ_S3_ACCESS_KEY_ID",
  "RYTHMIQ_S3_SECRET_ACCESS_KEY",
  "RYTHMIQ_SCALER_DATABASE_URL",
]);
const ROLES = ["api", "worker", "migrate"];

/** The port of an `ADDR:PORT` listen address. */
const portOf = (addr) => Number(String(addr ?? "").split(":").pop());

/** The environment a container gets, as name -> { from, value }. */
function containerEnv(container, configMaps, fail) {
  const env = new Map();
  for (const source of container.envFrom ?? []) {
    if (source.secretRef) fail(`envFrom secretRef ${source.secretRef.name}: name each secret variable (secretKeyRef)`);
    const name = source.configMapRef?.name;
    if (!name) continue;
    const cm = configMaps.get(name);
    if (!cm) {
      fail(`envFrom names ConfigMap ${name}, which is not in the manifests`);
      continue;
    }
    for (const [k, v] of Object.entries(cm.data ?? {})) env.set(k, { from: `configmap ${name}`, value: v });
  }
  for (const e of container.env ?? []) {
    const ref = e.valueFrom?.configMapKeyRef;
    if (ref && !(ref.key in (configMaps.get(ref.name)?.data ?? {}))) fail(`${e.name}: ConfigMap ${ref.name} has no key ${ref.key}`);
    const from = e.valueFrom?.secretKeyRef ? "secret" : e.valueFrom?.fieldRef ? "field" : ref ? "configmap" : "value";
    env.set(e.name, { from, value: ref ? configMaps.get(ref.name)?.data?.[ref.key] : e.value });
  }
  return env;
}

function checkProbe(container, probeName, path, port, fail) {
  const probe = container[probeName];
  if (!probe?.httpGet) return fail(`${probeName}: missing (an HTTP GET ${path})`);
  if (probe.httpGet.path !== path) fail(`${probeName}: path ${probe.httpGet.path}, want ${path}`);
  const declared = (container.ports ?? []).find((p) => p.name === probe.httpGet.port || p.containerPort === probe.httpGet.port);
  if (!declared) fail(`${probeName}: port ${probe.httpGet.port} is not a port of the container`);
  else if (declared.containerPort !== port) fail(`${probeName}: port ${declared.containerPort}, but the service listens on ${port}`);
}

function invariantErrors(docs, helpEnv) {
  const errors = [];
  const byKind = (kind) => docs.filter((d) => d.kind === kind);
  const configMaps = new Map(byKind("ConfigMap").map((c) => [c.metadata.name, c]));
  const known = new Set([...EXTRA_VARIABLES, ...Object.values(helpEnv).flat()]);
  for (const cm of configMaps.values()) {
    for (const [k, v] of Object.entries(cm.data ?? {})) {
      if (!known.has(k)) errors.push(`ConfigMap/${cm.metadata.name}: ${k} is no variable of any role`);
      if (SECRET_VARIABLES.has(k) && v !== "") errors.push(`ConfigMap/${cm.metadata.name}: ${k} belongs in a Secret`);
    }
  }
  const roles = new Map();
  for (const w of [...byKind("Deployment"), ...byKind("Job")]) {
    const pod = w.spec?.template?.spec ?? {};
    for (const c of pod.containers ?? []) {
      const where = `${w.kind}/${w.metadata.name} container ${c.name}`;
      const fail = (m) => errors.push(`${where}: ${m}`);
      const role = (c.args ?? c.command ?? [])[0];
      if (!ROLES.includes(role)) {
        fail(`args must start with the role (${ROLES.join(" | ")}), not ${role}`);
        continue;
      }
      roles.set(role, { workload: w, pod, container: c });
      const env = containerEnv(c, configMaps, fail);
      for (const v of helpEnv[role] ?? []) if (!env.has(v)) fail(`${v} (rythmiq ${role} --help) comes from no ConfigMap or Secret`);
      for (const [k, { from }] of env) {
        if (!known.has(k)) fail(`${k} is no variable of any role`);
        if (SECRET_VARIABLES.has(k) && from !== "secret") fail(`${k} must come from a Secret (secretKeyRef), not ${from}`);
      }
      // The hardening the restricted Pod Security Standard asks for.
      const psc = pod.securityContext ?? {};
      const sc = c.securityContext ?? {};
      if (psc.runAsNonRoot !== true && sc.runAsNonRoot !== true) fail("runAsNonRoot is not true");
      if (sc.readOnlyRootFilesystem !== true) fail("readOnlyRootFilesystem is not true");
      if (sc.allowPrivilegeEscalation !== false) fail("allowPrivilegeEscalation is not false");
      if (sc.privileged === true) fail("privileged");
      if (!(sc.capabilities?.drop ?? []).includes("ALL")) fail("capabilities do not drop ALL");
      if ((sc.capabilities?.add ?? []).length) fail("adds capabilities");
      if ((psc.seccompProfile ?? sc.seccompProfile)?.type !== "RuntimeDefault") fail("no RuntimeDefault seccomp profile");
      const req = c.resources?.requests ?? {};
      if (!req.cpu || !req.memory) fail("no CPU and memory requests");
      if (!c.resources?.limits?.memory) fail("no memory limit");
      if (role === "api") {
        const port = portOf(env.get("RYTHMIQ_LISTEN")?.value);
        checkProbe(c, "readinessProbe", "/readyz", port, fail);
        checkProbe(c, "livenessProbe", "/healthz", port, fail);
      }
      if (role === "worker") {
        const port = portOf(env.get("RYTHMIQ_METRICS_LISTEN")?.value);
        checkProbe(c, "readinessProbe", "/readyz", port, fail);
        // /healthz fails when the worker's heartbeats stop.
        checkProbe(c, "livenessProbe", "/healthz", port, fail);
        const shutdown = Number(env.get("RYTHMIQ_SHUTDOWN_TIMEOUT_SECS")?.value);
        const grace = pod.terminationGracePeriodSeconds ?? 30;
        if (!(grace > shutdown)) {
          fail(`terminationGracePeriodSeconds ${grace} must exceed RYTHMIQ_SHUTDOWN_TIMEOUT_SECS ${shutdown}`);
        }
        if (Number(env.get("RYTHMIQ_WORKER_CONCURRENCY")?.value) * 1000 > cpuMillis(req.cpu)) {
          fail("requests less than one CPU per concurrent job");
        }
      }
    }
  }
  for (const role of ROLES) if (!roles.has(role)) errors.push(`no workload runs rythmiq ${role}`);
  if (roles.get("migrate")?.workload.kind !== "Job") errors.push("rythmiq migrate must run as a Job");

  const selects = (obj, component) => obj.spec?.selector?.matchLabels?.["app.kubernetes.io/component"] === component;
  for (const component of ["api", "worker"]) {
    if (!byKind("PodDisruptionBudget").some((p) => selects(p, component))) errors.push(`no PodDisruptionBudget for the ${component} pods`);
  }
  const api = roles.get("api")?.workload.metadata.name;
  if (!byKind("HorizontalPodAutoscaler").some((h) => h.spec.scaleTargetRef?.name === api)) errors.push("no HorizontalPodAutoscaler for the API");
  if (!byKind("NetworkPolicy").length) errors.push("no NetworkPolicy");
  for (const role of ["api", "worker"]) {
    const w = roles.get(role)?.workload;
    const annotated = w?.spec.template.metadata?.annotations?.["prometheus.io/scrape"] === "true";
    const monitored = byKind("PodMonitor").some((p) => p.spec.selector?.matchLabels?.["app.kubernetes.io/component"] === role);
    if (w && !annotated && !monitored) errors.push(`${role} pods are scraped by nothing (no PodMonitor, no annotations)`);
  }

  // The autoscaler: KEDA's postgresql trigger on the worker Deployment.
  const worker = roles.get("worker");
  const scaled = byKind("ScaledObject").filter((s) => s.spec.scaleTargetRef?.name === worker?.workload.metadata.name);
  if (scaled.length !== 1) errors.push(`want one ScaledObject for the workers, found ${scaled.length}`);
  for (const so of scaled) {
    const fail = (m) => errors.push(`ScaledObject/${so.metadata.name}: ${m}`);
    const { minReplicaCount: min, maxReplicaCount: max } = so.spec;
    if (!(Number.isInteger(min) && Number.isInteger(max) && min >= 0 && max >= Math.max(min, 1))) fail(`replica bounds ${min}..${max}`);
    const triggers = so.spec.triggers.filter((t) => t.type === "postgresql");
    if (triggers.length !== 1) fail("want one postgresql trigger");
    for (const t of triggers) {
      const m = t.metadata ?? {};
      if (!/\bqueue_(backlog|depth)\s*\(/.test(m.query ?? "")) fail("the query does not read queue_backlog() or queue_depth()");
      if (!(Number(m.targetQueryValue) > 0)) fail(`targetQueryValue ${m.targetQueryValue} is not a positive number`);
      if (!(Number(m.activationTargetQueryValue) >= 0)) fail("activationTargetQueryValue is not set");
      const envName = m.connectionFromEnv;
      const workerEnv = new Set((worker?.container.env ?? []).map((e) => e.name));
      if (envName && !workerEnv.has(envName)) fail(`connectionFromEnv ${envName} is not in the worker's environment`);
      const auth = t.authenticationRef?.name;
      const ta = byKind("TriggerAuthentication").find((a) => a.metadata.name === auth);
      if (auth && !ta) fail(`authenticationRef ${auth} names no TriggerAuthentication`);
      for (const e of ta?.spec.env ?? []) if (!workerEnv.has(e.name)) fail(`TriggerAuthentication env ${e.name} is not in the worker's environment`);
      if (!envName && !ta) fail("no connection: neither connectionFromEnv nor a TriggerAuthentication");
    }
  }
  return errors;
}

function cpuMillis(q) {
  const s = String(q ?? "0");
  return s.endsWith("m") ? Number(s.slice(0, -1)) : Number(s) * 1000;
}

// ---------------------------------------------------------------------------------------------
// Compose

const seconds = (d) => {
  const m = String(d ?? "").match(/^(\d+)s$/);
  return m ? Number(m[1]) : NaN;
};

function composeErrors(compose, helpEnv) {
  const errors = [];
  const services = compose.services ?? {};
  for (const name of ["postgres", "minio", "migrate", "api", "worker", "prometheus", "grafana"]) {
    if (!services[name]) errors.push(`compose: no ${name} service`);
  }
  for (const [name, s] of Object.entries(services)) {
    if (s.image !== "rythmiq:dev") continue;
    const fail = (m) => errors.push(`compose service ${name}: ${m}`);
    const role = (s.command ?? [])[0];
    if (!ROLES.includes(role)) {
      fail(`command must be the role (${ROLES.join(" | ")}), not ${role}`);
      continue;
    }
    const env = s.environment ?? {};
    const allowed = new Set([...(helpEnv[role] ?? []), ...EXTRA_VARIABLES]);
    for (const k of Object.keys(env)) if (!allowed.has(k)) fail(`${k} is no variable of rythmiq ${role}`);
    if (!env.DATABASE_URL) fail("no DATABASE_URL");
    if (role !== "migrate" && s.depends_on?.migrate?.condition !== "service_completed_successfully") {
      fail("does not wait for migrate to complete");
    }
    if (role === "worker") {
      const shutdown = Number(env.RYTHMIQ_SHUTDOWN_TIMEOUT_SECS ?? 30);
      if (!(seconds(s.stop_grace_period) > shutdown)) fail(`stop_grace_period ${s.stop_grace_period} must exceed ${shutdown}s`);
    }
  }
  if (!((services.api?.deploy?.replicas ?? 1) >= 2)) errors.push("compose: fewer than two API replicas");
  return errors;
}

// ---------------------------------------------------------------------------------------------
// Self-test: each break must be caught.

const findDoc = (docs, kind, name) => docs.find((d) => d.kind === kind && d.metadata.name === name);
const workerPod = (docs) => findDoc(docs, "Deployment", "rythmiq-worker").spec.template.spec;
const BREAKS = {
  "a replica count that is not a number": (d) => (findDoc(d, "Deployment", "rythmiq-api").spec.replicas = "two"),
  "a misspelt probe field": (d) => {
    const c = workerPod(d).containers[0];
    c.readinesProbe = c.readinessProbe;
    delete c.readinessProbe;
  },
  "an unknown field in the ScaledObject": (d) => (findDoc(d, "ScaledObject", "rythmiq-worker").spec.maxReplicas = 4),
  "a trigger without its type": (d) => delete findDoc(d, "ScaledObject", "rythmiq-worker").spec.triggers[0].type,
  "no targetQueryValue": (d) => delete findDoc(d, "ScaledObject", "rythmiq-worker").spec.triggers[0].metadata.targetQueryValue,
  "a worker grace period below the shutdown timeout": (d) => (workerPod(d).terminationGracePeriodSeconds = 20),
  "a worker variable missing": (d) => delete findDoc(d, "ConfigMap", "rythmiq-worker").data.RYTHMIQ_HEARTBEAT_SECS,
  "a misspelt variable": (d) => (findDoc(d, "ConfigMap", "rythmiq-api").data.RYTHMIQ_RATE_LIMIT_PER_MINUTES = "30"),
  "a secret in a ConfigMap": (d) => (findDoc(d, "ConfigMap", "rythmiq-common").data.RYTHMIQ_MASTER_KEY = "k:AAAA"),
  "a writable root filesystem": (d) => (workerPod(d).containers[0].securityContext.readOnlyRootFilesystem = false),
  "no worker liveness probe": (d) => delete workerPod(d).containers[0].livenessProbe,
  "a liveness probe on the wrong port": (d) => (workerPod(d).containers[0].livenessProbe.httpGet.port = 8080),
  "root allowed": (d) => (workerPod(d).securityContext.runAsNonRoot = false),
  "no PodDisruptionBudget for workers": (d) => d.splice(d.indexOf(findDoc(d, "PodDisruptionBudget", "rythmiq-worker")), 1),
};

// ---------------------------------------------------------------------------------------------

async function manifestErrors(docs, helpEnv) {
  const errors = [];
  for (const doc of docs) errors.push(...(await schemaErrors(doc)));
  errors.push(...invariantErrors(docs, helpEnv));
  return errors;
}

function loadDocs(path) {
  const docs = [];
  for (const d of parseAllDocuments(readFileSync(path, "utf8"))) {
    if (d.errors.length) throw new Error(`${path}: ${d.errors[0].message}`);
    const js = d.toJS();
    if (js) docs.push(js);
  }
  if (!docs.length) throw new Error(`${path}: no objects`);
  return docs;
}

async function main(argv) {
  const helpEnv = {};
  const files = [];
  let compose = null;
  let selftest = false;
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === "--help-env") {
      const [role, file] = argv[++i].split("=");
      helpEnv[role] = [...readFileSync(file, "utf8").matchAll(/^\s*(\w+)\s*$/gm)].map((m) => m[1]);
      if (!helpEnv[role].length) throw new Error(`${file}: no variables for ${role}`);
    } else if (argv[i] === "--compose") compose = argv[++i];
    else if (argv[i] === "--selftest") selftest = true;
    else files.push(argv[i]);
  }
  for (const role of ROLES) if (!helpEnv[role]) throw new Error(`--help-env ${role}=FILE is required`);
  if (!files.length) throw new Error("no rendered manifests given");

  let failures = 0;
  if (selftest) {
    const pristine = loadDocs(files[0]);
    const clean = await manifestErrors(structuredClone(pristine), helpEnv);
    if (clean.length) {
      console.error(`self-test: the unbroken manifests already fail:\n  ${clean.join("\n  ")}`);
      return 1;
    }
    for (const [what, breakIt] of Object.entries(BREAKS)) {
      const docs = structuredClone(pristine);
      breakIt(docs);
      const errors = await manifestErrors(docs, helpEnv);
      if (errors.length) console.log(`self-test: caught ${what}: ${errors[0]}`);
      else {
        console.error(`self-test: NOT caught: ${what}`);
        failures++;
      }
    }
    if (compose) {
      const doc = parseYaml(readFileSync(compose, "utf8"), { merge: true });
      doc.services.worker.stop_grace_period = "10s";
      doc.services.api.environment.RYTHMIQ_LISTENING = "0.0.0.0:8080";
      const errors = composeErrors(doc, helpEnv);
      if (errors.length >= 2) console.log(`self-test: caught a broken compose file: ${errors.join("; ")}`);
      else {
        console.error("self-test: NOT caught: a broken compose file");
        failures++;
      }
    }
    return failures ? 1 : 0;
  }

  for (const file of files) {
    const docs = loadDocs(file);
    const errors = await manifestErrors(docs, helpEnv);
    for (const e of errors) console.error(`${file}: ${e}`);
    failures += errors.length;
    if (!errors.length) console.log(`${file}: ${docs.length} objects valid (${[...new Set(docs.map((d) => d.kind))].join(", ")})`);
  }
  if (compose) {
    const errors = composeErrors(parseYaml(readFileSync(compose, "utf8"), { merge: true }), helpEnv);
    for (const e of errors) console.error(`${compose}: ${e}`);
    failures += errors.length;
    if (!errors.length) console.log(`${compose}: services consistent with the roles' variables`);
  }
  return failures ? 1 : 0;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (e) => {
    console.error(`validate.mjs: ${e.stack ?? e}`);
    process.exit(2);
  },
);
