#!/usr/bin/env node
// @ts-check
// A wa-sessions client in Node: creates a session, follows WatchSessions and WatchQrCodes, and
// reacts to the session's state. Plain @grpc/grpc-js + @grpc/proto-loader on the same .proto
// files as every other client; `npm run types` (or `make stubs`) generates the TypeScript types
// this file is checked against (`npm run typecheck`).
//
//   node index.js [--server HOST:PORT] [--session ID] [--api-key KEY] [--timeout SECONDS]
//
// Prints one line per event ("state ...", "qr ...", "connected ...", each QR code drawn below its
// "qr" line) and exits 0 once the session is CONNECTED, 1 if it needs a person (FAILED /
// LOGGED_OUT) or on an error.
'use strict';

const path = require('node:path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const QRCode = require('qrcode');

/** @typedef {import('./types/session_service').ProtoGrpcType} SessionProto */
/** @typedef {import('./types/wasessions/v1/SessionService').SessionServiceClient} SessionServiceClient */
/** @typedef {import('./types/wasessions/v1/Session').Session__Output} Session */
/** @typedef {import('./types/wasessions/v1/WatchSessionsResponse').WatchSessionsResponse__Output} WatchSessionsResponse */
/** @typedef {import('./types/wasessions/v1/QrCode').QrCode__Output} QrCode */

const PROTOS = path.resolve(__dirname, '..', '..', 'protos');

const USAGE = `usage: node index.js [--server HOST:PORT] [--session ID] [--api-key KEY] [--timeout SECONDS]

Creates the session (or follows it if it exists), draws each of its QR codes in the terminal
until a phone links it, and follows its state. Exits 0 once it is CONNECTED (printing the
account), 1 if it needs a person (FAILED, LOGGED_OUT), on an error or after the timeout.

  --server HOST:PORT  the wa-sessions server (default: $WASESSIONS_SERVER or 127.0.0.1:50051)
  --session ID        the session id (default: node-demo)
  --api-key KEY       sent as "authorization: Bearer KEY" (default: $WASESSIONS_API_KEY)
  --timeout SECONDS   give up if not CONNECTED by then (default: 120)
  --help              this text`;

/** @param {string[]} argv */
function parseArgs(argv) {
  const options = {
    server: process.env.WASESSIONS_SERVER || '127.0.0.1:50051',
    session: 'node-demo',
    apiKey: process.env.WASESSIONS_API_KEY || '',
    timeout: 120,
    help: false,
  };
  for (let i = 0; i < argv.length; i += 1) {
    const flag = argv[i];
    if (flag === '--help' || flag === '-h') {
      options.help = true;
      continue;
    }
    if (!['--server', '--session', '--api-key', '--timeout'].includes(flag)) {
      throw new Error(`unknown option ${flag} (see --help)`);
    }
    const value = argv[i + 1];
    if (value === undefined) throw new Error(`${flag} needs a value (see --help)`);
    if (flag === '--server') options.server = value;
    else if (flag === '--session') options.session = value;
    else if (flag === '--api-key') options.apiKey = value;
    else options.timeout = Number(value);
    i += 1;
  }
  return options;
}

/**
 * The QR code as text, like the Python CLI draws it: one character per module across and two
 * down (Unicode half blocks), a block where a module is light, with the 4-module quiet zone,
 * so it reads dark on light in a terminal with a dark background.
 * @param {string} value
 */
function renderQr(value) {
  const { modules } = QRCode.create(value, { errorCorrectionLevel: 'M' });
  const quiet = 4;
  const size = modules.size + 2 * quiet;
  /** @param {number} row @param {number} col */
  const light = (row, col) => {
    const r = row - quiet;
    const c = col - quiet;
    const inside = r >= 0 && c >= 0 && r < modules.size && c < modules.size;
    return !(inside && modules.get(r, c));
  };
  const lines = [];
  for (let row = 0; row < size; row += 2) {
    let line = '';
    for (let col = 0; col < size; col += 1) {
      const up = light(row, col);
      const down = row + 1 < size ? light(row + 1, col) : false;
      line += up && down ? '\u2588' : up ? '\u2580' : down ? '\u2584' : ' ';
    }
    lines.push(line);
  }
  return lines.join('\n');
}

/** Loads the contract from the .proto files (keepCase: the same field names as the protos). */
function loadClient(/** @type {string} */ server) {
  const definition = protoLoader.loadSync('wasessions/v1/session_service.proto', {
    includeDirs: [PROTOS],
    keepCase: true,
    longs: String,
    enums: String,
    defaults: true,
    oneofs: true,
  });
  const proto = /** @type {SessionProto} */ (
    /** @type {unknown} */ (grpc.loadPackageDefinition(definition))
  );
  return new proto.wasessions.v1.SessionService(server, grpc.credentials.createInsecure());
}

/**
 * A unary call as a promise.
 * @template T
 * @param {(callback: grpc.requestCallback<T>) => unknown} call
 * @returns {Promise<T>}
 */
function unary(call) {
  return new Promise((resolve, reject) => {
    call((error, response) => (error ? reject(error) : resolve(/** @type {T} */ (response))));
  });
}

/** @param {unknown} error */
function describe(error) {
  const e = /** @type {Partial<grpc.ServiceError>} */ (error);
  if (e && typeof e.code === 'number') {
    return `${grpc.status[e.code]}: ${e.details}`;
  }
  return error instanceof Error ? error.message : String(error);
}

async function main() {
  const options = parseArgs(process.argv.slice(2));
  if (options.help) {
    console.log(USAGE);
    return;
  }
  /** @type {SessionServiceClient} */
  const client = loadClient(options.server);
  const metadata = new grpc.Metadata();
  if (options.apiKey) metadata.set('authorization', `Bearer ${options.apiKey}`);
  const name = `sessions/${options.session}`;

  /** @type {grpc.ClientReadableStream<any>[]} */
  const streams = [];
  /** @param {number} code */
  const finish = (code) => {
    for (const stream of streams) stream.cancel();
    client.close();
    process.exitCode = code;
  };
  const timer = setTimeout(() => {
    console.log(`timeout: ${name} did not get CONNECTED within ${options.timeout}s`);
    finish(1);
  }, options.timeout * 1000);
  timer.unref();

  try {
    /** @type {Session} */
    const created = await unary((cb) =>
      client.CreateSession({ session_id: options.session }, metadata, cb),
    );
    console.log(`created ${created.name} ${created.state}`);
  } catch (error) {
    if (/** @type {grpc.ServiceError} */ (error).code !== grpc.status.ALREADY_EXISTS) throw error;
    console.log(`exists ${name}`);
  }

  /** @type {Promise<void>} resolves once the QR stream (if any) has ended */
  let qrDone = Promise.resolve();
  let followingQr = false;
  const followQr = () => {
    if (followingQr) return;
    followingQr = true;
    const qr = client.WatchQrCodes({ name }, metadata);
    streams.push(qr);
    qrDone = new Promise((resolve) => qr.on('close', resolve));
    qr.on('data', (/** @type {QrCode} */ code) => {
      if (code.outcome !== 'OUTCOME_UNSPECIFIED') {
        console.log(`qr-outcome ${code.outcome}`);
      } else {
        // `code.value` drawn for a person to scan (WhatsApp > Linked devices > Link a device).
        console.log(`qr ${code.sequence}: scan it with WhatsApp (Linked devices > Link a device)`);
        console.log(renderQr(code.value));
      }
    });
    qr.on('error', (/** @type {grpc.ServiceError} */ error) => {
      if (error.code !== grpc.status.CANCELLED) console.log(`qr-error ${describe(error)}`);
    });
  };

  const watch = client.WatchSessions({ names: [name] }, metadata);
  streams.push(watch);
  watch.on('data', (/** @type {WatchSessionsResponse} */ message) => {
    const session = message.snapshot || (message.change && message.change.session);
    if (message.event === 'resync') console.log(`resync ${message.resync && message.resync.reason}`);
    if (!session) return;
    const cause = message.change ? ` ${message.change.cause}` : '';
    console.log(`state ${session.state} ${session.required_action}${cause}`);
    // React to the state: show QR codes while they are wanted, stop once linked.
    if (session.state === 'QR_PENDING') followQr();
    if (session.state === 'CONNECTED') {
      // The QR stream ends by itself once the phone linked (outcome PAIRED): let it finish.
      const account = session.account;
      qrDone.then(() => {
        console.log(`connected ${account ? `${account.phone_number} ${account.jid}` : ''}`.trim());
        clearTimeout(timer);
        finish(0);
      });
    } else if (session.state === 'FAILED' || session.state === 'LOGGED_OUT') {
      console.log(`needs-action ${session.required_action}: ${session.status_message}`);
      clearTimeout(timer);
      finish(1);
    }
  });
  watch.on('error', (/** @type {grpc.ServiceError} */ error) => {
    if (error.code === grpc.status.CANCELLED) return;
    console.log(`error ${describe(error)}`);
    clearTimeout(timer);
    finish(1);
  });
}

main().catch((error) => {
  console.log(`error ${describe(error)}`);
  process.exitCode = 1;
  process.exit();
});
