#!/usr/bin/env node
// A Node client of remotecalc: grpc-js over TLS, with the project's own .proto files loaded at run
// time by proto-loader (no generated code, no build step). It runs the article's sequence,
// 0 + 5 - 3, x 10, / 2, through both contracts, and 0.1 + 0.2 to show each contract's number type.
//
//   node client.js ADDRESS CA_PEM [--deadline SECONDS]
//
// With REMOTECALC_AUTH_TOKEN set, every call carries it as 'authorization: Bearer <token>' (call
// credentials over TLS); the token is read from the environment, never from the command line.
//
// Success: one JSON line, {"article": 10, "v1": 10, "article_sum": ..., "v1_sum": ...}, exit 0.
// A failed call: one JSON line, {"error": {"call": ..., "code": ..., "name": ..., "details": ...}},
// exit 1. Bad arguments: a usage line on stderr, exit 2.
'use strict';

const fs = require('fs');
const path = require('path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const PROTO_ROOT = path.resolve(__dirname, '..', '..', 'proto');
const ARTICLE_SEQUENCE = [['+', 5], ['-', 3], ['*', 10], ['/', 2]];
const ARTICLE_METHODS = { '+': 'Add', '-': 'Subtract', '*': 'Multiply', '/': 'Divide' };
const V1_OPERATORS = { '+': 'OPERATOR_ADD', '-': 'OPERATOR_SUBTRACT', '*': 'OPERATOR_MULTIPLY', '/': 'OPERATOR_DIVIDE' };
const STATUS_NAMES = Object.fromEntries(Object.entries(grpc.status).map(([name, code]) => [code, name]));

function usage(message) {
  process.stderr.write(`client.js: ${message}\nusage: node client.js ADDRESS CA_PEM [--deadline SECONDS]\n`);
  process.exit(2);
}

function parseArguments(argv) {
  const positional = [];
  let deadlineSeconds = 10;
  for (let i = 0; i < argv.length; i += 1) {
    if (argv[i] === '--deadline') {
      deadlineSeconds = Number(argv[i + 1]);
      if (!(deadlineSeconds > 0 && Number.isFinite(deadlineSeconds))) usage('--deadline needs a number of seconds above 0');
      i += 1;
    } else {
      positional.push(argv[i]);
    }
  }
  if (positional.length !== 2) usage('expected ADDRESS and CA_PEM');
  return { address: positional[0], caPath: positional[1], deadlineSeconds };
}

function loadContracts() {
  // keepCase keeps the .proto's field names (step_count); longs as strings keep uint64 exact.
  const options = { keepCase: true, longs: String, enums: String, defaults: true, includeDirs: [PROTO_ROOT] };
  const article = grpc.loadPackageDefinition(protoLoader.loadSync('calc.proto', options));
  const v1 = grpc.loadPackageDefinition(protoLoader.loadSync('remotecalc/v1/calculator.proto', options));
  return { Article: article.Calculator, V1: v1.remotecalc.v1.Calculator };
}

// Calls one unary method and resolves with its reply; a failure carries the method's name.
function call(stub, method, request, deadlineSeconds) {
  return new Promise((resolve, reject) => {
    const deadline = new Date(Date.now() + deadlineSeconds * 1000);
    stub[method](request, { deadline }, (error, reply) => {
      if (error) {
        error.call = method;
        reject(error);
      } else {
        resolve(reply);
      }
    });
  });
}

async function throughArticle(stub, deadlineSeconds) {
  const run = (method, request) => call(stub, method, request, deadlineSeconds);
  let { token } = await run('Create', { value: 0 });
  for (const [symbol, operand] of ARTICLE_SEQUENCE) await run(ARTICLE_METHODS[symbol], { token, value: operand });
  const answer = (await run('Answer', { token })).value;
  ({ token } = await run('Create', { value: 0.1 }));
  await run('Add', { token, value: 0.2 });
  const sum = (await run('Answer', { token })).value;
  return { answer, sum };
}

async function throughV1(stub, deadlineSeconds) {
  const run = (method, request) => call(stub, method, request, deadlineSeconds);
  let { token } = (await run('CreateSession', { value: 0 })).session;
  for (const [symbol, operand] of ARTICLE_SEQUENCE) {
    await run('Apply', { token, operation: { operator: V1_OPERATORS[symbol], operand } });
  }
  const closed = await run('CloseSession', { token });
  ({ token } = (await run('CreateSession', { value: 0.1 })).session);
  await run('Apply', { token, operation: { operator: 'OPERATOR_ADD', operand: 0.2 } });
  const sum = (await run('CloseSession', { token })).value;
  return { answer: closed.value, steps: Number(closed.step_count), sum };
}

// TLS credentials, and a bearer token on every call when one is given.
function withToken(channelCredentials, token) {
  if (!token) return channelCredentials;
  const bearer = grpc.credentials.createFromMetadataGenerator((_params, callback) => {
    const metadata = new grpc.Metadata();
    metadata.add('authorization', `Bearer ${token}`);
    callback(null, metadata);
  });
  return grpc.credentials.combineChannelCredentials(channelCredentials, bearer);
}

async function main() {
  const { address, caPath, deadlineSeconds } = parseArguments(process.argv.slice(2));
  let caPem;
  try {
    caPem = fs.readFileSync(caPath);
  } catch (error) {
    usage(`cannot read the CA ${caPath}: ${error.message}`);
  }
  const { Article, V1 } = loadContracts();
  const credentials = withToken(grpc.credentials.createSsl(caPem), process.env.REMOTECALC_AUTH_TOKEN);
  const article = new Article(address, credentials);
  const v1 = new V1(address, credentials);
  try {
    const fromArticle = await throughArticle(article, deadlineSeconds);
    const fromV1 = await throughV1(v1, deadlineSeconds);
    const results = {
      article: fromArticle.answer,
      v1: fromV1.answer,
      v1_steps: fromV1.steps,
      article_sum: fromArticle.sum,
      v1_sum: fromV1.sum,
    };
    process.stdout.write(`${JSON.stringify(results)}\n`);
  } catch (error) {
    if (typeof error.code !== 'number') throw error;
    const failure = { call: error.call, code: error.code, name: STATUS_NAMES[error.code], details: error.details };
    process.stdout.write(`${JSON.stringify({ error: failure })}\n`);
    process.exitCode = 1;
  } finally {
    article.close();
    v1.close();
  }
}

main().catch((error) => {
  process.stderr.write(`client.js: ${error.stack || error}\n`);
  process.exitCode = 1;
});
