// The simulator page: the engine is the wasm-bindgen build in ./pkg (`cargo xtask simulator`).
import init, { Simulator } from './pkg/palisade_simulator.js';

const $ = (id) => document.getElementById(id);
let compiled = null; // a Simulator for the policies text and mesh options it was built from
let compiledKey = null;

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  Object.assign(e, attrs);
  for (const c of children) e.append(c);
  return e;
}

// The mesh options of the form, as the engine's `Options` JSON.
function options() {
  return JSON.stringify({
    rootNamespace: $('root-namespace').value.trim(),
    trustDomain: $('trust-domain').value.trim(),
    trustDomainAliases: $('trust-domain-aliases').value.split(',').map((a) => a.trim()).filter((a) => a),
    pathNormalization: $('path-normalization').value,
  });
}

// The Simulator for the current policies and options, compiled again only when they changed.
function simulator() {
  const text = $('policies').value;
  const opts = options();
  const key = opts + '\n' + text;
  if (compiled === null || compiledKey !== key) {
    if (compiled !== null) compiled.free();
    compiled = new Simulator(text, opts);
    compiledKey = key;
  }
  return compiled;
}

// Selects the line of an error in the textarea it is in.
function reveal(p) {
  if (p.file === 'options.json') return;
  const area = p.file === 'request.json' ? $('request') : $('policies');
  if (!p.line) return;
  const lines = area.value.split('\n');
  let start = 0;
  for (let i = 0; i < p.line - 1 && i < lines.length; i++) start += lines[i].length + 1;
  const end = start + (lines[p.line - 1] || '').length;
  area.focus();
  area.setSelectionRange(start, end);
  area.scrollTop = Math.max(0, (p.line - 5) * 16);
}

function showErrors(title, errors) {
  const list = el('ul', { className: 'errors' });
  for (const p of errors) {
    const where = p.line ? `${p.file}:${p.line}:${p.column}: ` : '';
    const at = p.path ? ` (at ${p.path}${p.document ? ' in ' + p.document : ''})` : '';
    const help = p.help ? ` — help: ${p.help}` : '';
    const li = el('li', { textContent: where + p.message + at + help });
    li.onclick = () => reveal(p);
    list.append(li);
  }
  $('result').replaceChildren(el('p', { textContent: title }), list);
}

function evaluate() {
  const answer = JSON.parse(simulator().evaluate($('request').value));
  if (!answer.ok) {
    showErrors(answer.stage === 'policies' ? 'The policies are invalid:' : 'The request is invalid:', answer.errors);
    return;
  }
  const out = [];
  for (const r of answer.results) {
    const dl = el('dl');
    const row = (k, v) => dl.append(el('dt', { textContent: k }), el('dd', { textContent: v }));
    row('rule', r.rule ? r.rule.id : '(none)');
    row('step', r.step);
    row('why', r.explanation);
    if (r.envoyDetails) row('Envoy details', r.envoyDetails);
    for (const s of r.shadow) row('dry-run', `${s.action} policies would ${s.verdict} (${s.matched ? s.matched.id : 'no rule matched'})`);
    if (r.audit) row('audit', r.audit.id);
    for (const c of r.custom || []) row('CUSTOM', `provider ${c.provider} (${c.rule.id}): ${c.answer || 'pending — not asked yet'}`);
    if (r.network) row('network', `${r.network.verdict} (${r.network.step})`);
    for (const e of r.errors) row('error', e);
    if (r.asExpected !== undefined) row('expected', `${r.expect || '-'} by ${r.expectRule || '-'}: ${r.asExpected ? 'met' : 'NOT MET'}`);
    out.push(
      el('div', { className: `verdict ${r.verdict}`, textContent: (r.name ? r.name + ': ' : '') + r.verdict }),
      dl,
    );
  }
  out.push(el('details', {}, el('summary', { textContent: 'JSON' }), el('pre', { textContent: JSON.stringify(answer, null, 2) })));
  $('result').replaceChildren(...out);
}

function check() {
  const answer = JSON.parse(simulator().check());
  if (!answer.ok) {
    showErrors('The policies are invalid:', answer.errors);
    return;
  }
  const s = answer.summary;
  $('result').replaceChildren(el('p', {
    textContent: `valid: ${s.authorizationPolicies} AuthorizationPolicies (ALLOW ${s.allow}, DENY ${s.deny}, AUDIT ${s.audit}; ${s.dryRun} dry-run; ${s.rules} rules), ${s.requestAuthentications} RequestAuthentications, ${s.networkPolicies} NetworkPolicies, ${s.containerPolicies} ContainerPolicies, ${s.workloads} workloads in ${s.namespaces} namespaces`,
  }));
}

async function main() {
  await init();
  try {
    const shop = await (await fetch('./pkg/shop.json')).json();
    $('policies').value = shop.policies;
    for (const r of shop.requests) $('sample').append(el('option', { value: r.text, textContent: r.name }));
    $('sample').onchange = () => { $('request').value = $('sample').value; };
    $('request').value = shop.requests.length ? shop.requests[0].text : '{}';
  } catch (e) {
    $('status').textContent = `the shop example (pkg/shop.json) did not load: ${e}`;
  }
  $('evaluate').disabled = false;
  $('check').disabled = false;
  $('evaluate').onclick = evaluate;
  $('check').onclick = check;
  // `index.html#evaluate` / `#check` run once on load (for links and headless screenshots);
  // `#evaluate-all` evaluates every sample at once (as JSON lines; the browser test uses it).
  // A query sets mesh options before that: `?pathNormalization=NONE&rootNamespace=…`.
  const query = new URLSearchParams(location.search);
  const fields = { rootNamespace: 'root-namespace', trustDomain: 'trust-domain', trustDomainAliases: 'trust-domain-aliases', pathNormalization: 'path-normalization' };
  for (const [k, id] of Object.entries(fields)) if (query.has(k)) $(id).value = query.get(k);
  if (location.hash === '#evaluate-all') {
    $('request').value = Array.from($('sample').options, (o) => JSON.stringify(JSON.parse(o.value))).join('\n');
    evaluate();
  }
  if (location.hash === '#evaluate') evaluate();
  if (location.hash === '#check') check();
  if ($('status').textContent.startsWith('loading')) {
    $('status').textContent = 'The engine runs in this page (WebAssembly); nothing is sent anywhere. The shop example (examples/shop) is loaded.';
  }
}

main().catch((e) => { $('status').textContent = `the engine did not load: ${e}`; });
