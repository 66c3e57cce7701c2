// A client of a hilnas agent in Node.js: @grpc/grpc-js + @grpc/proto-loader, loading only the
// project's own .proto files (protos/v1/agent.proto and protos/grpc/health/v1/health.proto).
//
//   node client.js ADDRESS MODEL.onnx [TOKEN]
//
// Calls Health/Check (no token), Describe, Benchmark with a partly filled MeasurementConfig and
// explicit zeros, Benchmark hash-only, and Describe with a wrong token; prints one JSON object.
'use strict';

const crypto = require('crypto');
const fs = require('fs');
const path = require('path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const PROTOS = path.resolve(__dirname, '..', '..', 'protos');
const LOAD_OPTIONS = { includeDirs: [PROTOS], keepCase: true, longs: Number, enums: String, defaults: true };

function load(file) {
  return grpc.loadPackageDefinition(protoLoader.loadSync(file, LOAD_OPTIONS));
}

function call(client, method, request, metadata) {
  return new Promise((resolve) => {
    client[method](request, metadata || new grpc.Metadata(), { deadline: Date.now() + 60000 }, (err, reply) => {
      resolve(err ? { error: { code: grpc.status[err.code], details: err.details, metadata: err.metadata.getMap() } }
                  : { reply });
    });
  });
}

async function main() {
  const [address, modelPath, token] = process.argv.slice(2);
  const agentPkg = load('v1/agent.proto');
  const healthPkg = load('grpc/health/v1/health.proto');
  const creds = grpc.credentials.createInsecure();
  const agent = new agentPkg.hilnas.v1.DeviceAgent(address, creds);
  const health = new healthPkg.grpc.health.v1.Health(address, creds);
  const auth = new grpc.Metadata();
  if (token) auth.set('authorization', `Bearer ${token}`);
  const wrong = new grpc.Metadata();
  wrong.set('authorization', 'Bearer not-the-token-not-the-token');

  const model = fs.readFileSync(modelPath);
  const sha256 = crypto.createHash('sha256').update(model).digest('hex');
  const out = {};
  out.health = await call(health, 'Check', { service: 'hilnas.v1.DeviceAgent' });
  out.describe = await call(agent, 'Describe', {}, auth);
  // warmup_runs 0 and min_seconds 0 set explicitly; min_runs unset takes the agent's default (30).
  out.benchmark = await call(agent, 'Benchmark', {
    request_id: 'node-1', model, sha256, format: 'MODEL_FORMAT_ONNX', op_key: 'from-node',
    config: { warmup_runs: 0, min_seconds: 0, cv_threshold: 100 },
  }, auth);
  out.cached = await call(agent, 'Benchmark', { request_id: 'node-2', sha256, config: { min_runs: 3, min_seconds: 0, cv_threshold: 100 } },
                          auth);
  out.bad_hash = await call(agent, 'Benchmark', { request_id: 'node-3', model, sha256: sha256.toUpperCase() }, auth);
  out.wrong_token = await call(agent, 'Describe', {}, wrong);
  agent.close();
  health.close();
  process.stdout.write(JSON.stringify(out) + '\n');
}

main().catch((err) => { console.error(err); process.exit(1); });
