//! An image's user accounts for the `-u/--user` tests: a user with a random name, uid, home,
//! primary group and one supplementary group (listing the user as a member), plus a spare
//! group, written into the image's own `/etc/passwd` and `/etc/group`.

use std::fs;

use super::{marker, random_in, TestRoot};

/// One random user and its groups, as written into an image by [`Accounts::install`].
pub struct Accounts {
    pub name: String,
    pub uid: u64,
    pub gid: u64,
    pub home: String,
    pub supp_gid: u64,
    pub spare: String,
    pub spare_gid: u64,
}

impl Accounts {
    pub fn random() -> Accounts {
        let uid = random_in(1000..=29_999);
        Accounts {
            name: format!("u{}", marker()),
            uid,
            gid: uid + 30_000,
            home: format!("/home/{}", marker()),
            supp_gid: random_in(100..=999),
            spare: format!("g{}", marker()),
            spare_gid: random_in(60_001..=65_000),
        }
    }

    /// Replace `img`'s `/etc/passwd` and `/etc/group` (root, the user, its groups).
    pub fn install(&self, root: &TestRoot, img: &str) {
        let etc = root.store().join(img).join("rootfs/etc");
        let passwd = format!(
            "root:x:0:0:root:/root:/bin/sh\n{}:x:{}:{}::{}:/bin/sh\n",
            self.name, self.uid, self.gid, self.home
        );
        let group = format!(
            "root:x:0:\nprimary:x:{}:\nsupp:x:{}:other,{}\n{}:x:{}:\n",
            self.gid, self.supp_gid, self.name, self.spare, self.spare_gid
        );
        fs::write(etc.join("passwd"), passwd).expect("passwd");
        fs::write(etc.join("group"), group).expect("group");
    }
}
