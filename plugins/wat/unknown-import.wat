;; world: test:hostile/evil-filter
;; A well-formed filter whose only problem is an import the router does not provide:
;; `plugin check` must say so (it used to say the component "does not implement" the world).
(import "evil:net/socket@1.0.0" "connect" (func $connect))
(func (export "init") (param i32 i32 i32 i32 i32 i32) (result i32) (call $init_ok))
(func (export "filter") (param i32 i32 i32) (param $spans_len i32) (param i32 i32 i64) (result i32)
  (local $n i32)
  (local.set $n (call $records (local.get $spans_len)))
  (call $filter_result
    (call $keep_all (local.get $n)) (local.get $n) (global.get $empty) (i32.const 0)))
(func (export "cabi_post_filter") (param i32) (call $reset))
