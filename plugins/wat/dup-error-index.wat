;; world: filter
;; Keeps every record but names record 0 twice in `errors` (it used to be counted twice).
(data (i32.const 1024) "dup")

(func (export "init") (param i32 i32 i32 i32 i32 i32) (result i32) (call $init_ok))

(func (export "filter") (param i32 i32 i32) (param $spans_len i32) (param i32 i32 i64) (result i32)
  (local $n i32) (local $errs i32)
  (local.set $n (call $records (local.get $spans_len)))
  (local.set $errs (call $alloc (i32.const 24) (i32.const 4)))
  (i32.store (local.get $errs) (i32.const 0))
  (i32.store offset=4 (local.get $errs) (i32.const 1024))
  (i32.store offset=8 (local.get $errs) (i32.const 3))
  (i32.store offset=12 (local.get $errs) (i32.const 0))
  (i32.store offset=16 (local.get $errs) (i32.const 1024))
  (i32.store offset=20 (local.get $errs) (i32.const 3))
  (call $filter_result
    (call $keep_all (local.get $n)) (local.get $n) (local.get $errs) (i32.const 2)))
(func (export "cabi_post_filter") (param i32) (call $reset))
