rustler::init!("erlkaf_nif");
