;; Exact scoring kernels for VectorMatrix (WebAssembly SIMD128).
;;
;; Memory layout is owned by vector-matrix.ts; every argument here is a byte offset
;; or a count:
;;
;;   matrix  rows x stride bytes, row r at matrix + r * stride
;;   query   stride bytes
;;   out     one f32 per scored row
;;   slots   (slot variants) one u32 row index per entry
;;
;; stride is a multiple of 64 bytes (16 floats) and the padding of every row and of
;; the query is zero, so the inner loop consumes 16 floats per trip with no tail and
;; the padding adds nothing to a dot product or a squared distance.
;;
;; Four independent f32x4 accumulators per row: with one, each add waits for the
;; previous one (a latency chain). Eight measured slower than four on Node 20 at
;; 100k x 384 (5.2 vs 4.8 ms), so four it is. The lanes are summed as
;; ((a0 + a1) + (a2 + a3)), then (l0 + l1) + (l2 + l3).
;;
;; The scans call a per-row function: hand-inlining it measured no difference
;; (6.56 vs 6.56 ms at 100k x 384), the scan being limited by memory bandwidth.
(module
  (memory (export "memory") 1)

  ;; Sums the four accumulators' lanes into one f32.
  (func $reduce (param $a0 v128) (param $a1 v128) (param $a2 v128) (param $a3 v128)
    (result f32)
    (local $v v128)
    (local.set $v
      (f32x4.add
        (f32x4.add (local.get $a0) (local.get $a1))
        (f32x4.add (local.get $a2) (local.get $a3))))
    (f32.add
      (f32.add (f32x4.extract_lane 0 (local.get $v)) (f32x4.extract_lane 1 (local.get $v)))
      (f32.add (f32x4.extract_lane 2 (local.get $v)) (f32x4.extract_lane 3 (local.get $v)))))

  ;; Dot product of the row at $p with the query at $q; $end = $p + stride.
  (func $dot_row (param $p i32) (param $q i32) (param $end i32) (result f32)
    (local $a0 v128) (local $a1 v128) (local $a2 v128) (local $a3 v128)
    (loop $lane
      (local.set $a0 (f32x4.add (local.get $a0)
        (f32x4.mul (v128.load (local.get $p)) (v128.load (local.get $q)))))
      (local.set $a1 (f32x4.add (local.get $a1)
        (f32x4.mul (v128.load offset=16 (local.get $p)) (v128.load offset=16 (local.get $q)))))
      (local.set $a2 (f32x4.add (local.get $a2)
        (f32x4.mul (v128.load offset=32 (local.get $p)) (v128.load offset=32 (local.get $q)))))
      (local.set $a3 (f32x4.add (local.get $a3)
        (f32x4.mul (v128.load offset=48 (local.get $p)) (v128.load offset=48 (local.get $q)))))
      (local.set $p (i32.add (local.get $p) (i32.const 64)))
      (local.set $q (i32.add (local.get $q) (i32.const 64)))
      (br_if $lane (i32.lt_u (local.get $p) (local.get $end))))
    (call $reduce (local.get $a0) (local.get $a1) (local.get $a2) (local.get $a3)))

  ;; Squared L2 distance between the row at $p and the query at $q; $end = $p + stride.
  (func $l2_row (param $p i32) (param $q i32) (param $end i32) (result f32)
    (local $a0 v128) (local $a1 v128) (local $a2 v128) (local $a3 v128)
    (local $d0 v128) (local $d1 v128) (local $d2 v128) (local $d3 v128)
    (loop $lane
      (local.set $d0 (f32x4.sub (v128.load (local.get $p)) (v128.load (local.get $q))))
      (local.set $d1
        (f32x4.sub (v128.load offset=16 (local.get $p)) (v128.load offset=16 (local.get $q))))
      (local.set $d2
        (f32x4.sub (v128.load offset=32 (local.get $p)) (v128.load offset=32 (local.get $q))))
      (local.set $d3
        (f32x4.sub (v128.load offset=48 (local.get $p)) (v128.load offset=48 (local.get $q))))
      (local.set $a0 (f32x4.add (local.get $a0) (f32x4.mul (local.get $d0) (local.get $d0))))
      (local.set $a1 (f32x4.add (local.get $a1) (f32x4.mul (local.get $d1) (local.get $d1))))
      (local.set $a2 (f32x4.add (local.get $a2) (f32x4.mul (local.get $d2) (local.get $d2))))
      (local.set $a3 (f32x4.add (local.get $a3) (f32x4.mul (local.get $d3) (local.get $d3))))
      (local.set $p (i32.add (local.get $p) (i32.const 64)))
      (local.set $q (i32.add (local.get $q) (i32.const 64)))
      (br_if $lane (i32.lt_u (local.get $p) (local.get $end))))
    (call $reduce (local.get $a0) (local.get $a1) (local.get $a2) (local.get $a3)))

  ;; out[r] = dot(matrix row r, query) for r in [0, rows).
  (func (export "dot_all")
    (param $matrix i32) (param $query i32) (param $rows i32) (param $stride i32) (param $out i32)
    (local $p i32) (local $outEnd i32)
    (if (i32.eqz (local.get $rows)) (then (return)))
    (local.set $p (local.get $matrix))
    (local.set $outEnd (i32.add (local.get $out) (i32.shl (local.get $rows) (i32.const 2))))
    (loop $row
      (f32.store (local.get $out) (call $dot_row
        (local.get $p) (local.get $query) (i32.add (local.get $p) (local.get $stride))))
      (local.set $p (i32.add (local.get $p) (local.get $stride)))
      (local.set $out (i32.add (local.get $out) (i32.const 4)))
      (br_if $row (i32.lt_u (local.get $out) (local.get $outEnd)))))

  ;; out[r] = squared L2 distance between matrix row r and query, for r in [0, rows).
  (func (export "l2_all")
    (param $matrix i32) (param $query i32) (param $rows i32) (param $stride i32) (param $out i32)
    (local $p i32) (local $outEnd i32)
    (if (i32.eqz (local.get $rows)) (then (return)))
    (local.set $p (local.get $matrix))
    (local.set $outEnd (i32.add (local.get $out) (i32.shl (local.get $rows) (i32.const 2))))
    (loop $row
      (f32.store (local.get $out) (call $l2_row
        (local.get $p) (local.get $query) (i32.add (local.get $p) (local.get $stride))))
      (local.set $p (i32.add (local.get $p) (local.get $stride)))
      (local.set $out (i32.add (local.get $out) (i32.const 4)))
      (br_if $row (i32.lt_u (local.get $out) (local.get $outEnd)))))

  ;; out[i] = dot(matrix row slots[i], query) for i in [0, count).
  ;; The caller has checked every slot against the matrix size.
  (func (export "dot_slots")
    (param $matrix i32) (param $query i32) (param $slots i32) (param $count i32)
    (param $stride i32) (param $out i32)
    (local $p i32) (local $outEnd i32)
    (if (i32.eqz (local.get $count)) (then (return)))
    (local.set $outEnd (i32.add (local.get $out) (i32.shl (local.get $count) (i32.const 2))))
    (loop $row
      (local.set $p (i32.add (local.get $matrix)
        (i32.mul (i32.load (local.get $slots)) (local.get $stride))))
      (f32.store (local.get $out) (call $dot_row
        (local.get $p) (local.get $query) (i32.add (local.get $p) (local.get $stride))))
      (local.set $slots (i32.add (local.get $slots) (i32.const 4)))
      (local.set $out (i32.add (local.get $out) (i32.const 4)))
      (br_if $row (i32.lt_u (local.get $out) (local.get $outEnd)))))

  ;; out[i] = squared L2 distance between matrix row slots[i] and query, for i in [0, count).
  ;; The caller has checked every slot against the matrix size.
  (func (export "l2_slots")
    (param $matrix i32) (param $query i32) (param $slots i32) (param $count i32)
    (param $stride i32) (param $out i32)
    (local $p i32) (local $outEnd i32)
    (if (i32.eqz (local.get $count)) (then (return)))
    (local.set $outEnd (i32.add (local.get $out) (i32.shl (local.get $count) (i32.const 2))))
    (loop $row
      (local.set $p (i32.add (local.get $matrix)
        (i32.mul (i32.load (local.get $slots)) (local.get $stride))))
      (f32.store (local.get $out) (call $l2_row
        (local.get $p) (local.get $query) (i32.add (local.get $p) (local.get $stride))))
      (local.set $slots (i32.add (local.get $slots) (i32.const 4)))
      (local.set $out (i32.add (local.get $out) (i32.const 4)))
      (br_if $row (i32.lt_u (local.get $out) (local.get $outEnd)))))
)
