;; world: filter
;; Keeps every record but reports an error for record n + 5, past the call's records (it used
;; to be ignored without a trace).
(data (i32.const 1024) "past the end")

(func (export "init") (param i32 i32 i32 i32 i32 i32) (result i32) (call $init_ok))

(func (export "filter") (param i32 i32 i32) (param $spans_len i32) (param i32 i32 i64) (result i32)
  (local $n i32) (local $errs i32)
  (local.set $n (call $records (local.get $spans_len)))
  (local.set $errs (call $alloc (i32.const 12) (i32.const 4)))
  (i32.store (local.get $errs) (i32.add (local.get $n) (i32.const 5)))
  (i32.store offset=4 (local.get $errs) (i32.const 1024))
  (i32.store offset=8 (local.get $errs) (i32.const 12))
  (call $filter_result
    (call $keep_all (local.get $n)) (local.get $n) (local.get $errs) (i32.const 1)))
(func (export "cabi_post_filter") (param i32) (call $reset))
