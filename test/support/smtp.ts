/**
 * A real SMTP server for tests (smtp-server), on a free port, that keeps what it receives and
 * parses it with postal-mime. It can be stopped and started again on the same port, to play a
 * mail server that is down for a while.
 */
import type { AddressInfo } from 'node:net';
import PostalMime from 'postal-mime';
import { SMTPServer } from 'smtp-server';

export interface ReceivedMail {
  /** envelope recipients (RCPT TO) */
  rcptTo: string[];
  mailFrom: string;
  raw: Buffer;
  parsed: Awaited<ReturnType<typeof PostalMime.parse>>;
}

export interface TestSmtp {
  /** smtp://127.0.0.1:PORT */
  url: string;
  port: number;
  received: ReceivedMail[];
  /** the size of every message sent to it (DATA), accepted or refused as too large */
  dataBytes: number[];
  /** refuse messages larger than this many bytes (552 5.3.4), from the next start(); undefined: any size */
  maxBytes: number | undefined;
  /** resolves when `count` messages have arrived (or rejects after `timeoutMs`) */
  waitFor(count: number, timeoutMs?: number): Promise<ReceivedMail[]>;
  /** stop accepting connections (the server is "down") */
  stop(): Promise<void>;
  /** accept again, on the same port */
  start(): Promise<void>;
  close(): Promise<void>;
}

/** `replyDelayMs`: how long the server takes to accept each message (a slow mail server). */
export async function startTestSmtp(opts: { maxBytes?: number; replyDelayMs?: number } = {}): Promise<TestSmtp> {
  const received: ReceivedMail[] = [];
  const dataBytes: number[] = [];
  let maxBytes = opts.maxBytes;
  const waiters: Array<() => void> = [];
  let server: SMTPServer | undefined;
  let port = 0;

  const create = () =>
    new SMTPServer({
      authOptional: true,
      disabledCommands: ['STARTTLS', 'AUTH'],
      logger: false,
      // A size limit as mail servers have one: advertised (SIZE), and a larger message refused
      // with 552 5.3.4 by smtp-server itself.
      ...(maxBytes === undefined ? {} : { size: maxBytes, rejectOversized: true }),
      onData(stream, session, callback) {
        const chunks: Buffer[] = [];
        stream.on('data', (c: Buffer) => chunks.push(c));
        stream.on('end', () => {
          const raw = Buffer.concat(chunks);
          dataBytes.push(raw.length);
          if (stream.sizeExceeded) return callback(); // refused by the server: not received
          PostalMime.parse(raw, { attachmentEncoding: 'utf8' })
            .then((parsed) => {
              received.push({
                raw,
                parsed,
                rcptTo: session.envelope.rcptTo.map((r) => r.address),
                mailFrom: session.envelope.mailFrom ? session.envelope.mailFrom.address : '',
              });
              for (const w of waiters.splice(0)) w();
              if (opts.replyDelayMs === undefined) callback();
              else setTimeout(callback, opts.replyDelayMs);
            })
            .catch((err: unknown) => callback(err as Error));
        });
      },
    });

  const listen = async () => {
    server = create();
    const s = server;
    await new Promise<void>((resolve, reject) => {
      s.once('error', reject);
      s.listen(port, '127.0.0.1', () => resolve());
    });
    port = (s.server.address() as AddressInfo).port;
  };
  const stop = async () => {
    const s = server;
    server = undefined;
    if (s) await new Promise<void>((resolve) => s.close(() => resolve()));
  };

  await listen();
  return {
    get url() {
      return `smtp://127.0.0.1:${port}`;
    },
    get port() {
      return port;
    },
    received,
    dataBytes,
    get maxBytes() {
      return maxBytes;
    },
    set maxBytes(n) {
      maxBytes = n;
    },
    async waitFor(count, timeoutMs = 10_000) {
      const deadline = Date.now() + timeoutMs;
      while (received.length < count) {
        const left = deadline - Date.now();
        if (left <= 0) throw new Error(`expected ${count} mails, received ${received.length}`);
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, left);
          waiters.push(() => {
            clearTimeout(t);
            resolve();
          });
        });
      }
      return received;
    },
    stop,
    start: listen,
    close: stop,
  };
}
