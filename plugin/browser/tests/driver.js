// Drives the simulator's `--target nodejs` build (the real .wasm) for `tests/node.rs`:
// node driver.js <pkg dir> <input.json>, where the input is
// {policies, requests: [{name, text}], badPolicies, badRequest}; prints one JSON answer.
'use strict';
const fs = require('fs');
const path = require('path');

const [pkgDir, inputPath] = process.argv.slice(2);
const sim = require(path.resolve(pkgDir, 'palisade_simulator.js'));
const input = JSON.parse(fs.readFileSync(inputPath, 'utf8'));

const compiled = new sim.Simulator(input.policies);
const out = {
  version: sim.version(),
  check: JSON.parse(sim.check(input.policies)),
  compiledCheck: JSON.parse(compiled.check()),
  // Each request twice: through the compiled Simulator and through `evaluate`.
  results: input.requests.map((r) => ({
    name: r.name,
    compiled: JSON.parse(compiled.evaluate(r.text)),
    direct: JSON.parse(sim.evaluate(input.policies, r.text)),
  })),
  badPolicies: JSON.parse(sim.check(input.badPolicies)),
  badPoliciesEvaluate: JSON.parse(sim.evaluate(input.badPolicies, input.requests[0].text)),
  badRequest: JSON.parse(compiled.evaluate(input.badRequest)),
};
compiled.free();
process.stdout.write(JSON.stringify(out));
