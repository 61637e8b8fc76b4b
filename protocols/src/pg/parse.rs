//! TODO(helper): in progress
