//! Timing: a wrong code takes as long to refuse whether its first or its last digit is
//! wrong, so response times do not reveal how many leading digits a guess got right.
//!
//! Why two levels. The code comparison (`otp::codes_equal`) costs tens of nanoseconds; an
//! HTTP request on this machine costs milliseconds with jitter far larger than that, so an
//! end-to-end measurement alone could not see a per-digit leak even if there were one. So:
//! - at the function level, the comparison itself is timed for both cases with many
//!   samples, and a deliberately leaky early-exit comparison, timed the same way, is the
//!   positive control that shows the measurement sees a per-digit difference of that size;
//! - end to end, `/verify` over HTTP is timed for both cases, with a positive control (an
//!   unknown user, answered without cryptography or a write) to show the harness works.
//!
//! The statistic is robust to the noise of a shared 2-core machine: samples are taken in
//! pairs, one of each case in random order, back to back, so drift and load bursts hit both
//! cases alike; the sign test then asks whether one case is slower in more pairs than chance
//! allows. Under "no difference" its z-score is approximately standard normal whatever the
//! noise's distribution, so |z| < 5 fails by chance about once in 3.5 million runs, while a
//! real per-digit leak gives z in the tens. A steady difference smaller than any digit's
//! comparison could make (a fraction of a clock cycle) is significant too with enough
//! pairs; at the function level it must also be a quarter of the early exit's per-digit
//! saving to count as a leak.

use std::hint::black_box;
use std::time::{Duration, Instant};

use mfa::otp::codes_equal;

use crate::helpers::*;

/// The sign test over paired differences `a - b`: z-score (positive: `a` slower) and the
/// median difference.
fn sign_test(pairs: &[(Duration, Duration)]) -> (f64, f64) {
    let slower_a = pairs.iter().filter(|(a, b)| a > b).count() as f64;
    let slower_b = pairs.iter().filter(|(a, b)| b > a).count() as f64;
    let z = (slower_a - slower_b) / (slower_a + slower_b).sqrt().max(1.0);
    let mut differences: Vec<f64> = pairs.iter().map(|(a, b)| a.as_secs_f64() - b.as_secs_f64()).collect();
    differences.sort_by(f64::total_cmp);
    (z, differences[differences.len() / 2])
}

/// `n` pairs of timings of `measure(true)` and `measure(false)`, in random order within each pair.
fn paired(n: usize, mut measure: impl FnMut(bool) -> Duration) -> Vec<(Duration, Duration)> {
    (0..n)
        .map(|_| {
            if rand::random::<bool>() {
                let a = measure(true);
                (a, measure(false))
            } else {
                let b = measure(false);
                (measure(true), b)
            }
        })
        .collect()
}

/// What a naive implementation does: stop at the first differing byte.
fn leaky_equal(expected: &str, presented: &str) -> bool {
    if expected.len() != presented.len() {
        return false;
    }
    for (a, b) in expected.bytes().zip(presented.bytes()) {
        if black_box(a) != black_box(b) {
            return false;
        }
    }
    true
}

fn time_calls(compare: fn(&str, &str) -> bool, expected: &str, presented: &str) -> Duration {
    const CALLS: usize = 64; // many calls per sample: the clock's own cost is ~25 ns
    let started = Instant::now();
    for _ in 0..CALLS {
        black_box(compare(black_box(expected), black_box(presented)));
    }
    started.elapsed()
}

#[test]
fn the_code_comparison_takes_as_long_whichever_digit_is_wrong() {
    let expected = "492039";
    let (first_wrong, last_wrong) = ("592039", "492030");
    let pairs = 4000;

    let control =
        paired(pairs, |first| time_calls(leaky_equal, expected, if first { first_wrong } else { last_wrong }));
    let ours = paired(pairs, |first| time_calls(codes_equal, expected, if first { first_wrong } else { last_wrong }));

    let (z_control, median_control) = sign_test(&control);
    let (z_ours, median_ours) = sign_test(&ours);
    eprintln!(
        "comparison timing, {pairs} pairs of 64 calls, first digit wrong minus last digit wrong: \
         early-exit (control) z = {z_control:.1}, median {:.1} ns per call; \
         codes_equal z = {z_ours:.1}, median {:.2} ns per call",
        median_control * 1e9 / 64.0,
        median_ours * 1e9 / 64.0
    );
    assert!(
        z_control < -5.0,
        "the control (early exit) must be seen to be faster on a first-digit miss: z = {z_control}"
    );
    // With 4,000 pairs the sign test also finds steady differences far below a clock cycle
    // (one run: z = 7.8 at 0.13 ns a call, where the control's was 107 ns), which no digit's
    // comparison can make: a leak is a difference of at least a quarter of what the early
    // exit saves per digit.
    let digit_ns = median_control.abs() * 1e9 / 64.0 / (expected.len() - 1) as f64;
    let ours_ns = median_ours.abs() * 1e9 / 64.0;
    assert!(
        z_ours.abs() < 5.0 || ours_ns < digit_ns / 4.0,
        "codes_equal's time depends on which digit is wrong: z = {z_ours}, {ours_ns:.2} ns a call \
         (the early exit's per digit: {digit_ns:.1} ns)"
    );
}

#[tokio::test]
async fn verify_takes_as_long_whichever_digit_is_wrong() {
    let app = TestApp::builder().envs(&[("MAX_FAILED_ATTEMPTS", "1000000")]).start().await;
    let secret = app.enroll("alice", None, None).await;
    let right = app.totp(&secret, 0);
    let window: Vec<String> = (-1..=1).map(|offset| app.totp(&secret, offset)).collect();
    let change = |position: usize| -> String {
        (1..10u8)
            .map(|shift| {
                let mut digits = right.clone().into_bytes();
                digits[position] = b'0' + (digits[position] - b'0' + shift) % 10;
                String::from_utf8(digits).unwrap()
            })
            .find(|code| !window.contains(code))
            .unwrap()
    };
    let (first_wrong, last_wrong) = (change(0), change(right.len() - 1));
    let pairs = 150;

    // Every request is one `/verify`, awaited before the next: one in flight at a time.
    let mut samples = Vec::with_capacity(pairs * 2);
    let mut control_samples = Vec::with_capacity(pairs * 2);
    for _ in 0..pairs {
        let order = rand::random::<bool>();
        for first in [order, !order] {
            let started = Instant::now();
            let reply = app.verify("alice", if first { &first_wrong } else { &last_wrong }).await;
            samples.push((first, started.elapsed()));
            assert_eq!(reply.status, 401);
        }
        for known in [order, !order] {
            let started = Instant::now();
            let reply = app.verify(if known { "alice" } else { "nobody" }, &first_wrong).await;
            control_samples.push((known, started.elapsed()));
            assert_eq!(reply.status, if known { 401 } else { 404 });
        }
    }
    let pair_up = |samples: &[(bool, Duration)]| -> Vec<(Duration, Duration)> {
        samples.chunks(2).map(|p| if p[0].0 { (p[0].1, p[1].1) } else { (p[1].1, p[0].1) }).collect()
    };
    let (z, median) = sign_test(&pair_up(&samples));
    let (z_control, median_control) = sign_test(&pair_up(&control_samples));
    eprintln!(
        "/verify timing, {pairs} pairs: first digit wrong minus last digit wrong z = {z:.1}, median {:.1} µs; \
         control (known user minus unknown user) z = {z_control:.1}, median {:.1} µs",
        median * 1e6,
        median_control * 1e6
    );
    assert!(z_control > 5.0, "the control must be seen: a wrong code for a known user costs more than a 404");
    assert!(z.abs() < 5.0, "/verify's time depends on which digit is wrong: z = {z}");
}
