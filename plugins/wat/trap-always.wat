;; world: filter
;; Traps on every call, whatever the records: the breaker must trip after
;; `breaker_failed_calls` failed calls and stop calling it.
(func (export "init") (param i32 i32 i32 i32 i32 i32) (result i32) (call $init_ok))
(func (export "filter") (param i32 i32 i32 i32 i32 i32 i64) (result i32) unreachable)
