//! The node agent: attests projected tokens and pod network identity on its node.
//!
//! Not built yet: see the agent issue. `tokentrail agent` reports that plainly.
