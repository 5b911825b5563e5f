//! The viewer's device class from its `User-Agent`, for CloudFront's device headers
//! (`CloudFront-Is-{Desktop,Mobile,Tablet,SmartTV,IOS,Android}-Viewer`). Substring rules in the spirit of
//! CloudFront's (which AWS does not publish): a tablet is not a mobile, a TV is neither, and desktop is
//! what is none of the three.

/// The device headers' answers for one `User-Agent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Device {
    pub desktop: bool,
    pub mobile: bool,
    pub tablet: bool,
    pub smarttv: bool,
    pub ios: bool,
    pub android: bool,
}

const TV: &[&str] = &[
    "smart-tv", "smarttv", "googletv", "appletv", "hbbtv", "netcast", "web0s", "webos.tv", "bravia", "crkey", "aftb",
    "aftm", "aftt", "roku", "tizen tv", "viera", "dtv",
];
const TABLET: &[&str] =
    &["ipad", "tablet", "kindle", "silk/", "playbook", "nexus 7", "nexus 9", "nexus 10", "sm-t", "tab "];
const MOBILE: &[&str] =
    &["mobi", "iphone", "ipod", "windows phone", "blackberry", "bb10", "opera mini", "iemobile", "webos"];

pub fn classify(user_agent: &str) -> Device {
    let ua = user_agent.to_ascii_lowercase();
    let has = |list: &[&str]| list.iter().any(|needle| ua.contains(needle));
    let android = ua.contains("android");
    let ios = !ua.contains("windows phone") && (ua.contains("iphone") || ua.contains("ipad") || ua.contains("ipod"));
    let smarttv = has(TV);
    // Android without "Mobile" is a tablet by Google's own rule for browser UAs.
    let tablet = !smarttv && (has(TABLET) || (android && !ua.contains("mobile")));
    let mobile = !smarttv && !tablet && (has(MOBILE) || android);
    Device { desktop: !(mobile || tablet || smarttv), mobile, tablet, smarttv, ios, android }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_user_agents() {
        let iphone = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148";
        assert_eq!(classify(iphone), Device { mobile: true, ios: true, ..Default::default() });
        let ipad = "Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148";
        assert_eq!(classify(ipad), Device { tablet: true, ios: true, ..Default::default() });
        let pixel = "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 Chrome/120.0 Mobile Safari/537.36";
        assert_eq!(classify(pixel), Device { mobile: true, android: true, ..Default::default() });
        let galaxy_tab = "Mozilla/5.0 (Linux; Android 13; SM-X700) AppleWebKit/537.36 Chrome/120.0 Safari/537.36";
        assert_eq!(classify(galaxy_tab), Device { tablet: true, android: true, ..Default::default() });
        let tv = "Mozilla/5.0 (SMART-TV; Linux; Tizen 6.0) AppleWebKit/537.36 SamsungBrowser/4.0 TV Safari/537.36";
        assert!(classify(tv).smarttv && !classify(tv).desktop);
        let firefox = "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0";
        assert_eq!(classify(firefox), Device { desktop: true, ..Default::default() });
        assert!(classify("").desktop, "no User-Agent: desktop, as CloudFront defaults");
    }
}
