//! JSON merge patch and strategic merge patch (owned by helper B, in progress).
