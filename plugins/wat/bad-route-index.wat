;; world: route
;; `init` names one destination ("out"); every record is routed to destination 5. It used to
;; fall back to the default sinks (every sink): silently duplicated into every file.
(data (i32.const 1024) "out")

(func (export "init") (param i32 i32 i32 i32 i32 i32) (result i32)
  ;; ok(["out"]): the list's one element (ptr, len) at 1040.
  (i32.store (i32.const 1040) (i32.const 1024))
  (i32.store (i32.const 1044) (i32.const 3))
  (i32.store8 (i32.const 16) (i32.const 0))
  (i32.store (i32.const 20) (i32.const 1040))
  (i32.store (i32.const 24) (i32.const 1))
  (i32.const 16))

(func (export "route") (param i32 i32 i32) (param $spans_len i32) (param i32 i32 i64) (result i32)
  (local $n i32) (local $dest i32) (local $i i32) (local $e i32)
  (local.set $n (call $records (local.get $spans_len)))
  (local.set $dest (call $alloc (i32.mul (local.get $n) (i32.const 8)) (i32.const 4)))
  (block $done
    (loop $next
      (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
      (local.set $e (i32.add (local.get $dest) (i32.mul (local.get $i) (i32.const 8))))
      (i32.store8 (local.get $e) (i32.const 1))
      (i32.store offset=4 (local.get $e) (i32.const 5))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $next)))
  (i32.store (i32.const 32) (local.get $dest))
  (i32.store (i32.const 36) (local.get $n))
  (i32.store (i32.const 40) (global.get $empty))
  (i32.store (i32.const 44) (i32.const 0))
  (i32.const 32))
(func (export "cabi_post_route") (param i32) (call $reset))
