;; Shared by every plugin in this folder (plugins/build.sh puts it inside each module, after the
;; plugin's own imports): the host's `log`, one memory, and a bump allocator whose heap is reset
;; after every call (by the `cabi_post_*` functions), so nothing a call allocates outlives it.
;;
;; Memory map: 16..28 `init`'s return area, 32..64 a call's return area, 1024..65536 static data,
;; then the heap. `$keep` makes everything allocated so far permanent (for `init`).
(import "edge-router:plugin/host@0.1.0" "log" (func $log (param i32 i32 i32)))
(memory (export "memory") 2)
(global $heap (mut i32) (i32.const 65536))
(global $heap_base (mut i32) (i32.const 65536))

(func $alloc (param $size i32) (param $align i32) (result i32)
  (local $ptr i32) (local $end i32) (local $have i32)
  (local.set $ptr
    (i32.and
      (i32.add (global.get $heap) (i32.sub (local.get $align) (i32.const 1)))
      (i32.sub (i32.const 0) (local.get $align))))
  (local.set $end (i32.add (local.get $ptr) (local.get $size)))
  (local.set $have (i32.mul (memory.size) (i32.const 65536)))
  (if (i32.gt_u (local.get $end) (local.get $have))
    (then
      (if (i32.eq
            (memory.grow
              (i32.shr_u
                (i32.add (i32.sub (local.get $end) (local.get $have)) (i32.const 65535))
                (i32.const 16)))
            (i32.const -1))
        (then unreachable))))
  (global.set $heap (local.get $end))
  (local.get $ptr))

(func (export "cabi_realloc") (param i32 i32) (param $align i32) (param $size i32) (result i32)
  (call $alloc (local.get $size) (local.get $align)))

(func $reset (global.set $heap (global.get $heap_base)))
(func $keep (global.set $heap_base (global.get $heap)))

;; `init`'s `ok(())`.
(func $init_ok (result i32)
  (i32.store8 (i32.const 16) (i32.const 0))
  (i32.const 16))

;; An empty list's pointer (aligned, in bounds).
(global $empty i32 (i32.const 64))

;; Records in a call: the spans list holds two offsets per record.
(func $records (param $spans_len i32) (result i32)
  (i32.shr_u (local.get $spans_len) (i32.const 1)))

;; `n` keep flags, all true.
(func $keep_all (param $n i32) (result i32)
  (local $p i32)
  (local.set $p (call $alloc (local.get $n) (i32.const 1)))
  (memory.fill (local.get $p) (i32.const 1) (local.get $n))
  (local.get $p))

;; A filter's answer at 32: keep (ptr, len), errors (ptr, len).
(func $filter_result (param $keep i32) (param $keep_len i32) (param $errs i32) (param $errs_len i32) (result i32)
  (i32.store (i32.const 32) (local.get $keep))
  (i32.store (i32.const 36) (local.get $keep_len))
  (i32.store (i32.const 40) (local.get $errs))
  (i32.store (i32.const 44) (local.get $errs_len))
  (i32.const 32))
