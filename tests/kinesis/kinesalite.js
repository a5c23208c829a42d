// Starts kinesalite on 127.0.0.1 only (its CLI binds every interface):
//   NODE_PATH=<node_modules> node tests/kinesis/kinesalite.js PORT [DB_PATH]
// With DB_PATH the streams are kept on disk (leveldb), so a restart on the same path keeps them.
// Prints "listening PORT" once it accepts connections.
const port = Number(process.argv[2]);
const path = process.argv[3];
const options = { createStreamMs: 50, deleteStreamMs: 50, updateStreamMs: 50, shardLimit: 100 };
if (path) options.path = path;
require('kinesalite')(options).listen(port, '127.0.0.1', () => console.log(`listening ${port}`));
