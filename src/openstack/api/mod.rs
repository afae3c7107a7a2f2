//! Every Cinder, Glance and Nova request ferry makes, built by one pure function
//! each: the client sends what these return and the renderer prints it, so
//! each body is written here and nowhere else.

pub mod cinder;
pub mod compute;
pub mod glance;
