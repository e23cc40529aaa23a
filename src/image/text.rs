//! Text shaping shared by the registry client and the credential helpers: whatever a server
//! or a helper says ends up in one of the contract's one-line error messages.

/// Any text as one line for an error message: whitespace runs folded, cut at 200 characters.
pub(super) fn one_line(s: &str) -> String {
    let s = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if s.len() > 200 {
        format!(
            "{}...",
            &s[..s.char_indices().nth(200).map_or(s.len(), |(i, _)| i)]
        )
    } else {
        s
    }
}
