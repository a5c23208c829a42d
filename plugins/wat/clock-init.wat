;; world: test:hostile/clock-filter
;; `init` fails while the wall clock (granted with `grant_clock = true`) is inside a window given
;; by the config's first two numbers, in Unix seconds: `{"fail_from": A, "fail_until": B}`. So
;; the instance made at start-up works, and instances made inside the window (after a trap) do
;; not. A call whose first record starts with `!` traps; every other call keeps everything.
(import "wasi:clocks/wall-clock@0.2.0" "now" (func $now (param i32)))
(data (i32.const 1024) "init refused: inside the configured failure window")

;; The `k`th (0-based) run of decimal digits in memory[ptr, ptr + len), as a number (0 if none).
(func $number (param $ptr i32) (param $len i32) (param $k i32) (result i64)
  (local $i i32) (local $c i32) (local $v i64) (local $in i32)
  (block $done
    (loop $next
      (br_if $done (i32.ge_u (local.get $i) (local.get $len)))
      (local.set $c (i32.load8_u (i32.add (local.get $ptr) (local.get $i))))
      (if (i32.and (i32.ge_u (local.get $c) (i32.const 48)) (i32.le_u (local.get $c) (i32.const 57)))
        (then
          (local.set $in (i32.const 1))
          (local.set $v
            (i64.add (i64.mul (local.get $v) (i64.const 10))
                     (i64.extend_i32_u (i32.sub (local.get $c) (i32.const 48))))))
        (else
          (if (local.get $in)
            (then
              (if (i32.eqz (local.get $k)) (then (return (local.get $v))))
              (local.set $k (i32.sub (local.get $k) (i32.const 1)))
              (local.set $v (i64.const 0))
              (local.set $in (i32.const 0))))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $next)))
  (if (result i64) (i32.and (local.get $in) (i32.eqz (local.get $k)))
    (then (local.get $v))
    (else (i64.const 0))))

(func (export "init") (param $config i32) (param $config_len i32) (param i32 i32 i32 i32) (result i32)
  (local $t i64)
  (call $now (i32.const 128))
  (local.set $t (i64.load (i32.const 128)))
  (if (i32.and
        (i64.ge_u (local.get $t) (call $number (local.get $config) (local.get $config_len) (i32.const 0)))
        (i64.lt_u (local.get $t) (call $number (local.get $config) (local.get $config_len) (i32.const 1))))
    (then
      (i32.store8 (i32.const 16) (i32.const 1))
      (i32.store (i32.const 20) (i32.const 1024))
      (i32.store (i32.const 24) (i32.const 50))
      (return (i32.const 16))))
  (call $init_ok))

(func (export "filter") (param $data i32) (param $data_len i32) (param $spans i32) (param $spans_len i32) (param i32 i32 i64) (result i32)
  (local $n i32)
  (local.set $n (call $records (local.get $spans_len)))
  (if (i32.gt_u (local.get $n) (i32.const 0))
    (then
      (if (i32.eq (i32.load8_u (i32.add (local.get $data) (i32.load (local.get $spans)))) (i32.const 33))
        (then unreachable))))
  (call $filter_result
    (call $keep_all (local.get $n)) (local.get $n) (global.get $empty) (i32.const 0)))
(func (export "cabi_post_filter") (param i32) (call $reset))
