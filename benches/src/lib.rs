//! kalamstore's criterion benches live in `benches/`; this library holds what they share.
