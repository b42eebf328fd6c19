// The student page: choose a rule, send photos as one batch, follow each file with long polls,
// download the fitted files. No framework: the page is small and must load on a slow phone.
// Nothing is stored in the browser except the session token (sessionStorage, gone with the tab).
'use strict';

const TOKEN_KEY = 'rythmiq.token';
const LANGS = ['en', 'hi'];
const MAX_TRIES = 5; // upload attempts before giving up (the same Idempotency-Key each time)
const SHRINK_OVER = 1.5e6; // photos over this many bytes may be shrunk before sending
const KEEP_TIMES = 4; // ...to no less than this many times the rule's pixels, each way

const $ = (id) => document.getElementById(id);
const S = {
  lang: 'en', msgs: {}, token: null, rules: [], rule: null,
  files: [], // {file, name, info: {w, h} | null, shrink: bool, state, job, error, output}
  batch: null, zip: null, busy: false,
};

// ---- words -----------------------------------------------------------------------------------
function t(key, vars) {
  let s = S.msgs[key] || key;
  for (const [k, v] of Object.entries(vars || {})) s = s.split('{' + k + '}').join(String(v));
  return s;
}

async function setLang(lang) {
  const r = await fetch('/assets/i18n/' + lang + '.json');
  S.msgs = await r.json();
  S.lang = lang;
  document.documentElement.lang = lang;
  for (const el of document.querySelectorAll('[data-t]')) el.textContent = t(el.dataset.t);
  const b = $('lang');
  b.textContent = t('lang.switch');
  b.lang = lang === 'hi' ? 'en' : 'hi';
  b.setAttribute('aria-label', t('lang.switch.label'));
  document.title = 'Rythmiq: ' + t('title');
  render();
}

function browserLang() {
  for (const l of navigator.languages || [navigator.language || 'en']) {
    const base = l.toLowerCase().split('-')[0];
    if (LANGS.includes(base)) return base;
  }
  return 'en';
}

function errorText(code) {
  const key = 'error.' + code;
  return S.msgs[key] ? t(key) : t('error.other');
}

// ---- the API ---------------------------------------------------------------------------------
class ApiError extends Error {
  constructor(status, code, message) { super(message); this.status = status; this.code = code; }
}

async function api(path, opts) {
  const o = Object.assign({ headers: {} }, opts || {});
  if (S.token) o.headers.Authorization = 'Bearer ' + S.token;
  let r;
  try { r = await fetch(path, o); } catch (e) { throw new ApiError(0, 'network', String(e)); }
  const body = await r.json().catch(() => null);
  if (!r.ok) {
    const err = (body && body.error) || {};
    if (r.status === 401) signedOut();
    throw new ApiError(r.status, err.code || (r.status >= 500 ? 'other' : 'network'), err.message || '');
  }
  return body;
}

const sleep = (ms) => new Promise((res) => setTimeout(res, ms));

// A random key without crypto.randomUUID, which needs a secure context (a phone on the LAN
// reaches the page over plain http).
function randomKey() {
  const b = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}

// ---- signing in --------------------------------------------------------------------------------
function readToken() {
  const m = /(?:^#|&)token=([^&]+)/.exec(location.hash);
  if (m) {
    sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(m[1]));
    // The token leaves the address bar and the history.
    history.replaceState(null, '', location.pathname + location.search);
  }
  return sessionStorage.getItem(TOKEN_KEY);
}

function signedOut() {
  sessionStorage.removeItem(TOKEN_KEY);
  S.token = null;
  $('app').hidden = true;
  $('signin').hidden = false;
  $('signin-msg').textContent = t('error.UNAUTHORIZED');
}

async function startGuest() {
  $('signin-msg').textContent = '';
  $('guest').disabled = true;
  try {
    const s = await api('/v1/sessions', { method: 'POST' });
    sessionStorage.setItem(TOKEN_KEY, s.token);
    S.token = s.token;
    $('signin').hidden = true;
    await showApp();
  } catch (e) {
    $('signin-msg').textContent = e.status === 404 ? t('signin.off') : errorText(e.code);
  } finally {
    $('guest').disabled = false;
  }
}

// ---- the rules -------------------------------------------------------------------------------
function examOf(rule) {
  const i = rule.name.lastIndexOf(' - ');
  return i > 0 ? [rule.name.slice(0, i), rule.name.slice(i + 3)] : [rule.name, rule.name];
}

function kbWindow(rule) { return [rule.min_kb * 1024, rule.max_kb * 1000]; }

async function loadRules() {
  S.rules = await api('/v1/portal-schemas');
  const sel = $('portal');
  sel.textContent = '';
  const groups = new Map();
  for (const r of S.rules) {
    const [exam] = examOf(r);
    if (!groups.has(exam)) groups.set(exam, []);
    groups.get(exam).push(r);
  }
  for (const [exam, rules] of groups) {
    const g = document.createElement('optgroup');
    g.label = exam;
    for (const r of rules) {
      const o = document.createElement('option');
      o.value = r.slug;
      g.append(o);
    }
    sel.append(g);
  }
  S.rule = S.rules[0] || null;
}

function renderRules() {
  for (const o of $('portal').querySelectorAll('option')) {
    const r = S.rules.find((x) => x.slug === o.value);
    if (!r) continue;
    const [exam, doc] = examOf(r);
    o.textContent = exam + ': ' + doc + ' (' + r.width + '×' + r.height + ', ' + r.min_kb + '–' + r.max_kb + ' KB)';
  }
  const r = S.rule;
  const box = $('rule');
  box.textContent = '';
  if (!r) return;
  const dl = document.createElement('dl');
  const row = (k, v) => {
    const dt = document.createElement('dt'); dt.textContent = k;
    const dd = document.createElement('dd');
    if (v instanceof Node) dd.append(v); else dd.textContent = v;
    dl.append(dt, dd);
  };
  row(t('rule.pixels'), t('rule.pixels.value', { w: r.width, h: r.height }) + ' · ' + t('kind.' + r.kind));
  row(t('rule.dpi'), t('rule.dpi.value', { dpi: r.dpi }));
  row(t('rule.format'), fmt(r.format));
  row(t('rule.kb'), t('rule.kb.value', { min: r.min_kb, max: r.max_kb }));
  if (r.background) row(t('rule.background'), r.background);
  if (r.source_url) {
    const span = document.createElement('span');
    const a = document.createElement('a');
    a.href = r.source_url; a.rel = 'noopener noreferrer'; a.target = '_blank';
    a.textContent = new URL(r.source_url).hostname;
    span.append(a);
    if (r.source_checked_on) span.append(' (' + t('rule.checked', { date: r.source_checked_on }) + ')');
    row(t('rule.source'), span);
  }
  box.append(dl);
}

// ---- choosing files --------------------------------------------------------------------------
async function measure(file) {
  try {
    const bmp = await createImageBitmap(file, { imageOrientation: 'from-image' });
    const info = { w: bmp.width, h: bmp.height };
    bmp.close();
    return info;
  } catch (e) {
    return null; // HEIC and other formats the browser cannot draw: the server reads them
  }
}

// How much a photo may be shrunk in the browser while still leaving the pipeline KEEP_TIMES the
// rule's pixels each way (so quality scoring, cropping and OCR see plenty); documents are never
// shrunk, their text needs every pixel.
function shrinkScale(f, rule) {
  if (!f.info || !rule || rule.kind === 'document' || f.file.size < SHRINK_OVER) return 1;
  const s = Math.max(KEEP_TIMES * rule.width / f.info.w, KEEP_TIMES * rule.height / f.info.h);
  return s < 0.8 ? s : 1;
}

async function addFiles(list) {
  for (const file of list) {
    const f = { file, name: file.name || 'photo.jpg', info: null, state: 'chosen', job: null, error: null, output: null };
    S.files.push(f);
    f.info = await measure(file);
  }
  render();
}

async function shrunk(f) {
  const s = shrinkScale(f, S.rule);
  if (s >= 1) return f.file;
  try {
    const bmp = await createImageBitmap(f.file, { imageOrientation: 'from-image' });
    const c = document.createElement('canvas');
    c.width = Math.round(bmp.width * s); c.height = Math.round(bmp.height * s);
    const g = c.getContext('2d');
    g.imageSmoothingQuality = 'high';
    g.drawImage(bmp, 0, 0, c.width, c.height);
    bmp.close();
    const blob = await new Promise((res) => c.toBlob(res, 'image/jpeg', 0.92));
    return blob && blob.size < f.file.size ? blob : f.file;
  } catch (e) {
    return f.file;
  }
}

// ---- sending ---------------------------------------------------------------------------------
// One POST /v1/batches with upload progress (XMLHttpRequest: fetch reports none). A dropped
// connection or a server error is retried with the same Idempotency-Key, so a retry of a request
// that did arrive returns the same batch instead of a second one.
function post(form, key, onProgress) {
  return new Promise((resolve) => {
    const x = new XMLHttpRequest();
    x.open('POST', '/v1/batches');
    x.setRequestHeader('Authorization', 'Bearer ' + S.token);
    x.setRequestHeader('Idempotency-Key', key);
    x.upload.onprogress = (e) => { if (e.lengthComputable) onProgress(e.loaded / e.total); };
    x.onload = () => {
      let body = null;
      try { body = JSON.parse(x.responseText); } catch (e) { body = null; }
      resolve({ status: x.status, body });
    };
    x.onerror = () => resolve({ status: 0, body: null });
    x.ontimeout = x.onerror;
    x.send(form);
  });
}

function progress(label, pct) {
  $('upload').hidden = false;
  $('upload-label').textContent = label;
  if (pct == null) $('progress').removeAttribute('value'); else $('progress').value = pct;
}

async function send(ev) {
  ev.preventDefault();
  const todo = S.files.filter((f) => f.state === 'chosen');
  if (!todo.length || !S.rule || S.busy) return;
  S.busy = true;
  $('form-msg').textContent = '';
  render();
  try {
    progress(t('upload.preparing'), null);
    for (const f of todo) f.rule = S.rule;
    const blobs = [];
    for (const f of todo) blobs.push(await shrunk(f));
    let batch = null;
    let pending = todo.map((f, i) => ({ f, blob: blobs[i] }));
    while (pending.length && !batch) {
      const form = new FormData();
      for (const p of pending) { form.append('file', p.blob, p.f.name); form.append('portal', S.rule.slug); }
      const key = randomKey();
      let res = null;
      for (let n = 1; n <= MAX_TRIES; n++) {
        res = await post(form, key, (x) => progress(t('upload.progress', { pct: Math.round(x * 100) }), x * 100));
        if (res.status !== 0 && res.status < 500) break;
        if (n < MAX_TRIES) {
          progress(t('upload.retry', { n: n + 1, max: MAX_TRIES }), null);
          await sleep(1000 * 2 ** n);
        }
      }
      if (res.status === 202) { batch = res.body; break; }
      const err = (res.body && res.body.error) || { code: res.status === 0 ? 'network' : 'other', message: '' };
      if (res.status === 401) { signedOut(); return; }
      // One bad file refuses the whole batch and says which ("file 2: …"): mark it, send the rest.
      const m = /^file (\d+): /.exec(err.message || '');
      const bad = m ? pending[Number(m[1]) - 1] : null;
      if (!bad) {
        $('form-msg').textContent = errorText(err.code);
        return;
      }
      bad.f.state = 'failed'; bad.f.error = err.code;
      pending = pending.filter((p) => p !== bad);
      render();
    }
    $('upload').hidden = true;
    if (!batch) { showResults(); return; }
    progress(t('upload.done'), 100);
    S.batch = batch.batch_id; S.zip = null;
    batch.jobs.forEach((j, i) => { pending[i].f.job = j.job_id; pending[i].f.state = j.status || 'pending'; });
    showResults();
    await Promise.all(pending.map((p) => follow(p.f)));
    await followBatch(batch.batch_id);
  } finally {
    S.busy = false;
    $('upload').hidden = true;
    render();
  }
}

function showResults() {
  $('results-s').hidden = false;
  render();
  $('step3').focus();
}

// Long-polls one job until it is completed or failed; a dropped poll waits and polls again.
async function follow(f) {
  let pause = 1000;
  while (f.state !== 'completed' && f.state !== 'failed') {
    try {
      const j = await api('/v1/jobs/' + f.job + '?wait=25');
      f.state = j.status; f.output = j.output; f.url = j.download_url; f.warnings = j.warnings;
      f.error = j.error_code; f.check = j.check || null;
      pause = 1000;
    } catch (e) {
      if (e.status === 401) return;
      if (e.status && e.status < 500) { f.state = 'failed'; f.error = e.code; }
      await sleep(pause); pause = Math.min(pause * 2, 15000);
    }
    render();
  }
  announce();
}

async function followBatch(id) {
  $('zip').hidden = true;
  for (let i = 0; i < 20 && S.batch === id; i++) {
    try {
      const b = await api('/v1/batches/' + id + '?wait=25');
      if (b.status === 'completed' || b.status === 'failed') {
        if (b.download_url && S.batch === id) { S.zip = b.download_url; render(); }
        return;
      }
    } catch (e) {
      if (e.status && e.status < 500) return;
      await sleep(2000);
    }
  }
}

function announce() {
  const sent = S.files.filter((f) => f.job);
  if (sent.every((f) => f.state === 'completed' || f.state === 'failed')) {
    $('live').textContent = t('done.live', { ok: sent.filter((f) => f.state === 'completed').length, n: sent.length });
  }
}

// ---- showing ---------------------------------------------------------------------------------
function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text != null) e.textContent = text;
  return e;
}

const kb = (bytes) => (bytes / 1024).toFixed(1);
// One name per format: the API says `jpg` for a file and `jpeg` for a rule.
const fmt = (f) => String(f || '?').replace('image/', '').toUpperCase().replace(/^JPG$/, 'JPEG');

// The rule check in plain words: the server's check report where a result carries one, else the
// file's own pixels, DPI, format and size against the rule (before fitting: what will change).
function checks(f) {
  const r = f.rule || S.rule;
  const ul = el('ul', 'checks');
  const add = (ok, text) => ul.append(el('li', ok === null ? 'todo' : ok ? 'yes' : 'no', text));
  const [lo, hi] = kbWindow(r);
  if (f.check && Array.isArray(f.check.items)) {
    for (const c of f.check.items) add(!!c.ok, c.message || c.name);
  } else if (f.output) {
    const o = f.output;
    add(o.width === r.width && o.height === r.height, t('check.pixels', { w: o.width, h: o.height, rw: r.width, rh: r.height }));
    add(o.dpi === r.dpi, t('check.dpi', { dpi: o.dpi, rdpi: r.dpi }));
    add(fmt(o.format) === fmt(r.format), t('check.format', { f: fmt(o.format), rf: fmt(r.format) }));
    add(o.bytes >= lo && o.bytes <= hi, t('check.kb', { kb: kb(o.bytes), min: r.min_kb, max: r.max_kb }));
    for (const w of Array.isArray(f.warnings) ? f.warnings : []) add(null, t('check.warning', { w: typeof w === 'string' ? w : (w.message || JSON.stringify(w)) }));
  } else if (!f.error) {
    if (f.info) add(null, t('check.pixels.before', { w: f.info.w, h: f.info.h, rw: r.width, rh: r.height }));
    add(null, t('check.format.before', { f: fmt(f.file.type), rf: fmt(r.format) }));
    add(null, t('check.kb.before', { kb: kb(f.file.size), min: r.min_kb, max: r.max_kb }));
  }
  return ul;
}

function stateText(f) {
  if (f.error) return errorText(f.error);
  return t('state.' + (f.state === 'chosen' ? 'queued' : f.state));
}

function renderChosen() {
  const ul = $('chosen');
  ul.textContent = '';
  for (const f of S.files.filter((x) => x.state === 'chosen')) {
    const li = el('li');
    li.append(el('span', null, f.name));
    const info = (f.info ? f.info.w + '×' + f.info.h + ', ' : '') + kb(f.file.size) + ' KB';
    li.append(el('span', null, shrinkScale(f, S.rule) < 1 ? info + ' · ' + t('files.shrink') : info));
    ul.append(li);
  }
  const n = S.files.filter((x) => x.state === 'chosen').length;
  $('send').disabled = !n || !S.rule || S.busy;
  $('send').textContent = n > 1 ? t('send.count', { n }) : t('send');
  for (const id of ['portal', 'files', 'camera']) $(id).disabled = S.busy;
}

function renderResults() {
  const ul = $('results');
  ul.textContent = '';
  for (const f of S.files.filter((x) => x.state !== 'chosen')) {
    const li = el('li', 'file');
    li.dataset.state = f.state;
    if (f.error) li.dataset.error = f.error;
    const head = el('div', 'head');
    if (f.state === 'completed' && f.url && /jpe?g|png/i.test((f.output && f.output.format) || '')) {
      const img = el('img');
      img.src = f.url; img.alt = ''; img.width = 88;
      head.append(img);
    }
    const text = el('div');
    text.append(el('p', 'name', f.name));
    const st = el('p', 'state');
    if (f.state === 'pending' || f.state === 'processing') st.append(el('span', 'spinner'));
    st.append(stateText(f));
    text.append(st);
    head.append(text);
    li.append(head);
    if (f.state !== 'failed') {
      li.append(el('p', 'visually-hidden', t('check.title')));
      if (!f.output) li.append(el('p', null, t('check.before')));
      li.append(checks(f));
    }
    if (f.state === 'completed' && f.url) {
      const a = el('a', 'button primary download', t('download'));
      a.href = f.url;
      a.download = (f.output && f.output.filename) || '';
      a.setAttribute('aria-label', t('download.label', { name: (f.output && f.output.filename) || f.name }));
      li.append(a);
    }
    ul.append(li);
  }
  const zip = $('zip');
  if (S.zip) { zip.href = S.zip; zip.hidden = false; } else zip.hidden = true;
}

function render() {
  if (!S.msgs.title) return;
  renderRules();
  renderChosen();
  renderResults();
}

// ---- start -----------------------------------------------------------------------------------
async function showApp() {
  $('app').hidden = false;
  try {
    await loadRules();
  } catch (e) {
    $('form-msg').textContent = errorText(e.code);
  }
  render();
}

function wire() {
  $('lang').addEventListener('click', () => setLang(S.lang === 'hi' ? 'en' : 'hi'));
  $('guest').addEventListener('click', startGuest);
  $('portal').addEventListener('change', (e) => {
    S.rule = S.rules.find((r) => r.slug === e.target.value) || null;
    render();
  });
  for (const id of ['files', 'camera']) {
    $(id).addEventListener('change', (e) => { addFiles(Array.from(e.target.files)); e.target.value = ''; });
  }
  $('app').addEventListener('submit', send);
  $('again').addEventListener('click', () => {
    S.files = S.files.filter((f) => f.state === 'chosen');
    S.batch = null; S.zip = null;
    $('results-s').hidden = true;
    render();
    $('files').focus();
  });
}

async function main() {
  wire();
  S.token = readToken();
  await setLang(browserLang());
  $('loading').hidden = true;
  if (S.token) await showApp(); else $('signin').hidden = false;
}

main();
