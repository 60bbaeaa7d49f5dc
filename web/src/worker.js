// The page's worker: its session (session.js), spoken to in the messages of
// channel.js.
import { Session } from './session.js';

const session = new Session((m, transfer) => postMessage(m, transfer));
addEventListener('message', (e) => session.handle(e.data));
