/**
 * erf and erfc on the host, to within a few units in the last place of a double, from
 * W. J. Cody's rational Chebyshev approximations ("Rational Chebyshev approximations for
 * the error function", Math. Comp. 23 (1969) 631–638; the coefficients of netlib's
 * specfun/erf, CALERF). erfc keeps its relative accuracy in the tail (no 1 − erf), which
 * gelu's negative side needs: 0.5·x·erfc(−x/√2).
 */

// The coefficients as the nearest doubles (JavaScript's shortest spelling of each).
// erf(x) = x·A(x²)/B(x²) for |x| ≤ 0.46875.
const A = [3.1611237438705655, 113.86415415105016, 377.485237685302, 3209.3775891384694, 0.18577770618460315];
const B = [23.601290952344122, 244.02463793444417, 1282.6165260773723, 2844.236833439171];
// erfc(y) = exp(−y²)·C(y)/D(y) for 0.46875 < y ≤ 4.
const C = [
  0.5641884969886701, 8.883149794388377, 66.11919063714163, 298.6351381974001, 881.952221241769, 1712.0476126340707,
  2051.0783778260716, 1230.3393547979972, 2.1531153547440383e-8,
];
const D = [
  15.744926110709835, 117.6939508913125, 537.1811018620099, 1621.3895745666903, 3290.7992357334597, 4362.619090143247,
  3439.3676741437216, 1230.3393548037495,
];
// erfc(y) = exp(−y²)·(1/√π − z·P(z)/Q(z))/y with z = 1/y², for y > 4.
const P = [
  0.30532663496123236, 0.36034489994980445, 0.12578172611122926, 0.016083785148742275, 0.0006587491615298378,
  0.016315387137302097,
];
const Q = [2.568520192289822, 1.8729528499234604, 0.5279051029514285, 0.06051834131244132, 0.0023352049762686918];

const THRESHOLD = 0.46875;
const INV_SQRT_PI = 0.5641895835477563;
/** erfc(y) underflows to 0 in a double from here on. */
const XBIG = 26.543;

/** erf(x)/x for |x| ≤ THRESHOLD. */
function erfSmall(x: number): number {
  const z = x * x;
  let num = A[4] * z;
  let den = z;
  for (let i = 0; i < 3; i++) {
    num = (num + A[i]) * z;
    den = (den + B[i]) * z;
  }
  return (num + A[3]) / (den + B[3]);
}

/** erfc(y) for y > THRESHOLD (or NaN). */
function erfcLarge(y: number): number {
  if (y >= XBIG) return 0;
  let r: number;
  if (y <= 4) {
    let num = C[8] * y;
    let den = y;
    for (let i = 0; i < 7; i++) {
      num = (num + C[i]) * y;
      den = (den + D[i]) * y;
    }
    r = (num + C[7]) / (den + D[7]);
  } else {
    const z = 1 / (y * y);
    let num = P[5] * z;
    let den = z;
    for (let i = 0; i < 4; i++) {
      num = (num + P[i]) * z;
      den = (den + Q[i]) * z;
    }
    r = (INV_SQRT_PI - (z * (num + P[4])) / (den + Q[4])) / y;
  }
  // exp(−y²) as exp(−t²)·exp(−(y − t)(y + t)) with t = y to 4 bits after the point: y² rounded
  // in a double would cost relative accuracy of the result for large y.
  const t = Math.trunc(y * 16) / 16;
  return Math.exp(-t * t) * Math.exp(-(y - t) * (y + t)) * r;
}

/** The error function. */
export function erf(x: number): number {
  const y = Math.abs(x);
  if (y <= THRESHOLD) return x * erfSmall(x);
  const c = erfcLarge(y);
  if (Number.isNaN(c)) return c;
  return x < 0 ? c - 1 : 1 - c;
}

/** The complementary error function 1 − erf(x), accurate relative to itself for large x. */
export function erfc(x: number): number {
  const y = Math.abs(x);
  if (y <= THRESHOLD) return 1 - x * erfSmall(x);
  const c = erfcLarge(y);
  return x < 0 ? 2 - c : c;
}
