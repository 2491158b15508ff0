fn fails(d: &[u8]) -> bool {
    std::panic::catch_unwind(|| lifeline_sim::fuzzing::run(d)).is_err()
}
#[test]
fn minimise() {
    std::panic::set_hook(Box::new(|_| {}));
    let mut data = std::fs::read(std::env::var("MIN_INPUT").unwrap()).unwrap();
    assert!(fails(&data));
    loop {
        let mut changed = false;
        let mut i = 0;
        while i + 2 <= data.len() {
            let mut d = data.clone();
            d.drain(i..i + 2);
            if fails(&d) {
                data = d;
                changed = true;
            } else {
                i += 2;
            }
        }
        if !changed {
            break;
        }
    }
    std::fs::write("/tmp/min.bin", &data).unwrap();
    let ops: Vec<String> = data
        .chunks(2)
        .map(|c| format!("{}:{}", c[0] % 12, c.get(1).copied().unwrap_or(0)))
        .collect();
    println!("MIN {:?}", ops);
}
