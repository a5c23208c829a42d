;; world: enrich
;; Rewrites every record into 32 KiB: 4 KB of one-byte records would come back as 128 MiB.
(global $size i32 (i32.const 32768))

(func (export "init") (param i32 i32 i32 i32 i32 i32) (result i32) (call $init_ok))

(func (export "enrich") (param i32 i32 i32) (param $spans_len i32) (param i32 i32 i64) (result i32)
  (local $n i32) (local $changed i32) (local $ends i32) (local $data i32) (local $i i32)
  (local.set $n (call $records (local.get $spans_len)))
  (local.set $data (call $alloc (i32.mul (local.get $n) (global.get $size)) (i32.const 1)))
  (memory.fill (local.get $data) (i32.const 120) (i32.mul (local.get $n) (global.get $size)))
  (local.set $changed (call $alloc (i32.mul (local.get $n) (i32.const 4)) (i32.const 4)))
  (local.set $ends (call $alloc (i32.mul (local.get $n) (i32.const 4)) (i32.const 4)))
  (block $done
    (loop $next
      (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
      (i32.store (i32.add (local.get $changed) (i32.mul (local.get $i) (i32.const 4)))
        (local.get $i))
      (i32.store (i32.add (local.get $ends) (i32.mul (local.get $i) (i32.const 4)))
        (i32.mul (i32.add (local.get $i) (i32.const 1)) (global.get $size)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $next)))
  (i32.store (i32.const 32) (local.get $changed))
  (i32.store (i32.const 36) (local.get $n))
  (i32.store (i32.const 40) (local.get $data))
  (i32.store (i32.const 44) (i32.mul (local.get $n) (global.get $size)))
  (i32.store (i32.const 48) (local.get $ends))
  (i32.store (i32.const 52) (local.get $n))
  (i32.store (i32.const 56) (global.get $empty))
  (i32.store (i32.const 60) (i32.const 0))
  (i32.const 32))
(func (export "cabi_post_enrich") (param i32) (call $reset))
