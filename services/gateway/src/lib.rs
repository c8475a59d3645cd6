//! dmgw
