;; world: filter
;; Logs 1000 messages of 1 MiB per call, each a forged router log line repeated (with newlines),
;; then keeps every record.
(data (i32.const 1024) "\n2026-12-07T06:00:00.000000Z ERROR edge_router::sinks: sink `out` failed: disk full (FORGED BY A PLUGIN)")
(global $line_len i32 (i32.const 104))
(global $msg (mut i32) (i32.const 0))
(global $msg_len i32 (i32.const 1048576))

(func (export "init") (param i32 i32 i32 i32 i32 i32) (result i32)
  (local $filled i32) (local $chunk i32)
  (global.set $msg (call $alloc (global.get $msg_len) (i32.const 1)))
  (memory.copy (global.get $msg) (i32.const 1024) (global.get $line_len))
  (local.set $filled (global.get $line_len))
  (block $done
    (loop $more
      (br_if $done (i32.ge_u (local.get $filled) (global.get $msg_len)))
      (local.set $chunk (local.get $filled))
      (if (i32.gt_u (i32.add (local.get $filled) (local.get $chunk)) (global.get $msg_len))
        (then (local.set $chunk (i32.sub (global.get $msg_len) (local.get $filled)))))
      (memory.copy
        (i32.add (global.get $msg) (local.get $filled)) (global.get $msg) (local.get $chunk))
      (local.set $filled (i32.add (local.get $filled) (local.get $chunk)))
      (br $more)))
  (call $keep)
  (call $init_ok))

(func (export "filter") (param i32 i32 i32) (param $spans_len i32) (param i32 i32 i64) (result i32)
  (local $n i32) (local $i i32)
  (local.set $n (call $records (local.get $spans_len)))
  (block $done
    (loop $next
      (br_if $done (i32.ge_u (local.get $i) (i32.const 1000)))
      (call $log (i32.const 4) (global.get $msg) (global.get $msg_len))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $next)))
  (call $filter_result
    (call $keep_all (local.get $n)) (local.get $n) (global.get $empty) (i32.const 0)))
(func (export "cabi_post_filter") (param i32) (call $reset))
