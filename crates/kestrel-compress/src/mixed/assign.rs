//! Types under a size budget: minimize the summed predicted KLD of the tensors (additive for
//! small independent perturbations) subject to the total size, a knapsack solved greedily on
//! each tensor's lower convex hull of (bytes, KLD): start every tensor at its smallest type,
//! then repeatedly take the upgrade with the most KLD saved per byte that still fits.

use super::sensitivity::TensorSensitivity;
use kestrel_gguf::GgmlType;
use std::collections::BTreeMap;

#[derive(Clone, Debug)]
pub struct Assignment {
    pub types: BTreeMap<String, GgmlType>,
    /// Bytes of the quantized tensors (the rest of the file not included).
    pub bytes: u64,
    pub predicted_kld: f64,
}

/// Indices into `s.options` (sorted by bytes) forming the lower convex hull: each step costs
/// more bytes and saves KLD at a falling rate per byte.
fn hull(s: &TensorSensitivity) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..s.options.len()).collect();
    idx.sort_by(|&a, &b| {
        let (x, y) = (&s.options[a], &s.options[b]);
        x.bytes.cmp(&y.bytes).then(x.kld.total_cmp(&y.kld))
    });
    // Keep only options that lower the KLD (a bigger type that is not better is useless).
    let mut mono: Vec<usize> = Vec::new();
    for i in idx {
        match mono.last() {
            Some(&l) if s.options[i].bytes == s.options[l].bytes => {}
            Some(&l) if s.options[i].kld >= s.options[l].kld => {}
            _ => mono.push(i),
        }
    }
    let slope = |a: usize, b: usize| {
        let (x, y) = (&s.options[a], &s.options[b]);
        (x.kld - y.kld) / (y.bytes - x.bytes) as f64
    };
    let mut h: Vec<usize> = Vec::new();
    for i in mono {
        while h.len() >= 2 && slope(h[h.len() - 2], h[h.len() - 1]) <= slope(h[h.len() - 1], i) {
            h.pop();
        }
        h.push(i);
    }
    h
}

/// The assignment for at most `budget` bytes of quantized tensors; `Err(smallest reachable
/// size)` when even the smallest types do not fit.
pub fn assign(sens: &[TensorSensitivity], budget: u64) -> Result<Assignment, u64> {
    let hulls: Vec<Vec<usize>> = sens.iter().map(hull).collect();
    let mut at = vec![0usize; sens.len()];
    let opt = |t: usize, k: usize| &sens[t].options[hulls[t][k]];
    let min: u64 = (0..sens.len()).map(|t| opt(t, 0).bytes).sum();
    if min > budget {
        return Err(min);
    }
    let mut used = min;
    let mut blocked = vec![false; sens.len()];
    loop {
        // The upgrade saving the most KLD per byte among those that fit.
        let mut best: Option<(usize, f64)> = None;
        for t in 0..sens.len() {
            if blocked[t] || at[t] + 1 >= hulls[t].len() {
                continue;
            }
            let (a, b) = (opt(t, at[t]), opt(t, at[t] + 1));
            let cost = b.bytes - a.bytes;
            if used + cost > budget {
                blocked[t] = true;
                continue;
            }
            let rate = (a.kld - b.kld) / cost as f64;
            if best.is_none_or(|(_, r)| rate > r) {
                best = Some((t, rate));
            }
        }
        let Some((t, _)) = best else { break };
        used += opt(t, at[t] + 1).bytes - opt(t, at[t]).bytes;
        at[t] += 1;
    }
    let types = (0..sens.len())
        .map(|t| (sens[t].name.clone(), opt(t, at[t]).ty))
        .collect();
    let predicted_kld = (0..sens.len()).map(|t| opt(t, at[t]).kld).sum();
    Ok(Assignment {
        types,
        bytes: used,
        predicted_kld,
    })
}

#[cfg(test)]
mod tests {
    use super::super::sensitivity::Choice;
    use super::*;

    fn sens(name: &str, opts: &[(GgmlType, u64, f64)]) -> TensorSensitivity {
        TensorSensitivity {
            name: name.into(),
            n_elements: 0,
            kld_ref: 0.0,
            options: opts
                .iter()
                .map(|&(ty, bytes, kld)| Choice {
                    ty,
                    bytes,
                    err: kld,
                    kld,
                })
                .collect(),
        }
    }

    #[test]
    fn bytes_go_where_they_save_most() {
        use GgmlType::*;
        let s = vec![
            sens("a", &[(Q4_0, 100, 1.0), (Q8_0, 200, 0.1)]),
            sens("b", &[(Q4_0, 100, 0.2), (Q8_0, 200, 0.01)]),
        ];
        let r = assign(&s, 300).unwrap();
        assert_eq!(r.types["a"], Q8_0);
        assert_eq!(r.types["b"], Q4_0);
        assert_eq!(r.bytes, 300);
        assert!((r.predicted_kld - 0.3).abs() < 1e-12);
        let r = assign(&s, 400).unwrap();
        assert_eq!((r.types["a"], r.types["b"]), (Q8_0, Q8_0));
        assert_eq!(assign(&s, 150).unwrap_err(), 200);
    }

    #[test]
    fn dominated_types_are_skipped() {
        use GgmlType::*;
        // Q5_0 is bigger than Q4_K yet worse: never chosen.
        let s = vec![sens(
            "a",
            &[(Q4_K, 100, 0.5), (Q5_0, 120, 0.6), (Q6_K, 150, 0.1)],
        )];
        let h = hull(&s[0]);
        assert_eq!(
            h.iter().map(|&i| s[0].options[i].ty).collect::<Vec<_>>(),
            vec![Q4_K, Q6_K]
        );
        assert_eq!(assign(&s, 140).unwrap().types["a"], Q4_K);
    }
}
