// kvault serve driven by the official OpenAI client (npm "openai", pinned in package.json).
// Run by CTest (test openai_client) after `npm ci`; needs KVAULT_BIN and KVAULT_TEST_MODEL.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';

const kvault = process.env.KVAULT_BIN;
const model = process.env.KVAULT_TEST_MODEL;
let server;
let client;
let baseURL;
// A private state folder: blocks and journals of this test touch nothing else.
const stateDir = mkdtempSync(join(tmpdir(), 'kvault_openai_'));

// Starts `kvault serve --port 0` and resolves with the port it reports.
function startServer() {
  return new Promise((resolve, reject) => {
    const args = ['serve', '--model', model, '--port', '0', '--window', '1024',
      '--cache-dir', join(stateDir, 'blocks'), '--data-dir', join(stateDir, 'data')];
    server = spawn(kvault, args, {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let log = '';
    const timer = setTimeout(() => reject(new Error(`server did not start:\n${log}`)), 30000);
    server.stderr.on('data', (data) => {
      log += data.toString();
      const match = log.match(/serving .* on http:\/\/127\.0\.0\.1:(\d+)/);
      if (match) {
        clearTimeout(timer);
        resolve(Number(match[1]));
      }
    });
    server.on('exit', (code) => reject(new Error(`server exited with ${code}:\n${log}`)));
  });
}

before(async () => {
  const port = await startServer();
  baseURL = `http://127.0.0.1:${port}/v1`;
  client = new OpenAI({ baseURL, apiKey: 'unused' });
});

// The folder goes only once the server has exited: on SIGTERM it still writes its queued
// blocks, and removing the folder under it races with those writes (ENOTEMPTY).
after(async () => {
  if (server.exitCode === null && server.signalCode === null) {
    const exited = new Promise((resolve) => server.once('exit', resolve));
    server.kill('SIGTERM');
    await exited;
  }
  rmSync(stateDir, { recursive: true, force: true });
});

const question = [
  { role: 'system', content: 'You are terse.' },
  { role: 'user', content: 'Name three rivers.' },
];

test('chat completion, non-stream', async () => {
  const reply = await client.chat.completions.create({
    model: 'any', messages: question, temperature: 0, max_tokens: 16,
    conversation_id: 'openai-nonstream',
  });
  assert.equal(reply.object, 'chat.completion');
  assert.equal(reply.choices.length, 1);
  assert.equal(reply.choices[0].message.role, 'assistant');
  assert.ok(reply.choices[0].message.content.length > 0);
  assert.ok(['stop', 'length'].includes(reply.choices[0].finish_reason));
  assert.ok(reply.usage.prompt_tokens > 0);
  assert.equal(reply.usage.total_tokens, reply.usage.prompt_tokens + reply.usage.completion_tokens);
});

test('stream reassembles to the non-stream text under greedy decoding', async () => {
  // Two fresh conversations (ids sent as an extra body field) decode the same prompt the same way.
  const whole = await client.chat.completions.create({
    model: 'any', messages: question, temperature: 0, max_tokens: 24,
    conversation_id: 'openai-compare-a',
  });
  const stream = await client.chat.completions.create({
    model: 'any', messages: question, temperature: 0, max_tokens: 24, stream: true,
    stream_options: { include_usage: true }, conversation_id: 'openai-compare-b',
  });
  let text = '';
  let chunks = 0;
  let usage = null;
  let finish = null;
  for await (const chunk of stream) {
    assert.equal(chunk.object, 'chat.completion.chunk');
    if (chunk.usage) usage = chunk.usage;
    if (chunk.choices.length === 0) continue;
    chunks += 1;
    text += chunk.choices[0].delta.content ?? '';
    if (chunk.choices[0].finish_reason) finish = chunk.choices[0].finish_reason;
  }
  assert.equal(text, whole.choices[0].message.content);
  assert.ok(chunks > 2);
  assert.equal(finish, whole.choices[0].finish_reason);
  assert.equal(usage.completion_tokens, whole.usage.completion_tokens);
});

test('conversation_id as an extra body field creates that conversation', async () => {
  await client.chat.completions.create({
    model: 'any', messages: [{ role: 'user', content: 'hello' }], max_tokens: 4,
    conversation_id: 'openai-extra-field',
  });
  const response = await fetch(`${baseURL}/conversations/list`, { method: 'POST' });
  const listed = await response.json();
  const ids = listed.conversations.map((c) => c.conversation_id);
  assert.ok(ids.includes('openai-extra-field'), JSON.stringify(ids));
});

test('models.list reports the cache size and the window', async () => {
  const models = await client.models.list();
  assert.equal(models.data.length, 1);
  assert.equal(models.data[0].object, 'model');
  assert.equal(models.data[0].max_model_len, 10000000);
  assert.equal(models.data[0].window, 1024);
});

test('a 400 surfaces as the client\'s BadRequestError', async () => {
  await assert.rejects(
    client.chat.completions.create({ model: 'any', messages: [] }),
    (error) => {
      assert.ok(error instanceof OpenAI.BadRequestError, String(error));
      assert.equal(error.status, 400);
      assert.match(error.message, /messages/);
      return true;
    },
  );
});

test('a stateless prompt beyond the window is context_length_exceeded', async () => {
  const content = 'lengthy '.repeat(3000);  // far more than the 1,024-token window
  await assert.rejects(
    client.chat.completions.create({ model: 'any', messages: [{ role: 'user', content }] }),
    (error) => {
      assert.ok(error instanceof OpenAI.BadRequestError, String(error));
      assert.equal(error.status, 400);
      assert.equal(error.code, 'context_length_exceeded');
      assert.equal(error.type, 'invalid_request_error');
      return true;
    },
  );
});

test('completions endpoint works with the client', async () => {
  const reply = await client.completions.create({
    model: 'any', prompt: 'Once upon a time', max_tokens: 8, temperature: 0,
  });
  assert.equal(reply.object, 'text_completion');
  assert.ok(reply.choices[0].text.length > 0);
  assert.ok(reply.usage.completion_tokens > 0 && reply.usage.completion_tokens <= 8);
});

test('response_format json_object constrains the reply to JSON', async () => {
  const reply = await client.chat.completions.create({
    model: 'any', messages: question, temperature: 0, max_tokens: 48,
    response_format: { type: 'json_object' }, presence_penalty: 0.5,
  });
  const text = reply.choices[0].message.content;
  assert.ok(text.startsWith('{'), text);
  // A reply the grammar let finish is one whole JSON object; a cut one is a prefix of one.
  if (reply.choices[0].finish_reason === 'stop') assert.equal(typeof JSON.parse(text), 'object');
  await assert.rejects(
    client.chat.completions.create({
      model: 'any', messages: question, response_format: { type: 'json_schema', json_schema: {} },
    }),
    (error) => error instanceof OpenAI.BadRequestError && /json_schema/.test(error.message),
  );
});
