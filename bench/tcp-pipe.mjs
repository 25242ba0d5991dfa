// A bare Node TCP pipe: the floor for any proxy written in Node.
//   node bench/tcp-pipe.mjs LISTEN_PORT UPSTREAM_PORT
import net from 'node:net';

const [port, upstream] = process.argv.slice(2).map(Number);
net
  .createServer({ noDelay: true }, (down) => {
    const up = net.connect({ port: upstream, host: '127.0.0.1', noDelay: true });
    down.pipe(up).pipe(down);
    const close = () => {
      down.destroy();
      up.destroy();
    };
    down.on('error', close);
    up.on('error', close);
  })
  .listen(port, '127.0.0.1');
