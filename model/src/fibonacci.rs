//! The fibonacci task's input: checked in the browser for an immediate message, and enforced
//! by the cluster, with the same words.

/// Largest n the cluster accepts: fibonacci(94) does not fit in 64 bits.
pub const MAX_N: i64 = 93;

/// Parses what the user typed as `n`, or says what is wrong with it.
pub fn parse_n(raw: &str) -> Result<i64, String> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Err(format!("Enter a whole number n from 0 to {MAX_N}."));
    }
    let n: i64 = raw
        .parse()
        .map_err(|_| format!("n must be a whole number (got {raw:?})."))?;
    validate_n(n)?;
    Ok(n)
}

/// The range check alone, for numbers that arrive already parsed.
pub fn validate_n(n: i64) -> Result<(), String> {
    if n < 0 {
        Err(format!("n must be 0 or more (got {n})."))
    } else if n > MAX_N {
        Err(format!(
            "n must be at most {MAX_N}: fibonacci({}) does not fit in 64 bits, and the naive \
             recursion's time grows about 1.6× with every +1.",
            MAX_N + 1
        ))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_n_accepts_whole_numbers_in_range() {
        assert_eq!(parse_n("0"), Ok(0));
        assert_eq!(parse_n(" 12 "), Ok(12));
        assert_eq!(parse_n("93"), Ok(93));
    }

    #[test]
    fn parse_n_explains_every_refusal() {
        assert!(parse_n("").unwrap_err().contains("Enter a whole number"));
        assert!(parse_n("2.5").unwrap_err().contains("whole number"));
        assert!(parse_n("abc").unwrap_err().contains("whole number"));
        assert!(parse_n("1e3").unwrap_err().contains("whole number"));
        assert!(parse_n("-1").unwrap_err().contains("0 or more"));
        let too_big = parse_n("94").unwrap_err();
        assert!(too_big.contains("at most 93") && too_big.contains("1.6×"));
    }
}
