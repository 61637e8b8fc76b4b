//! torpor proxy library
