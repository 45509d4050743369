import qrcode from "qrcode-generator";

/** The otpauth URI as a QR code in SVG (no data: URL, no inline script: CSP-safe). */
export function QrCode({ text, label }: { text: string; label: string }) {
  const qr = qrcode(0, "M");
  qr.addData(text);
  qr.make();
  const size = qr.getModuleCount();
  let d = "";
  for (let row = 0; row < size; row++) {
    for (let col = 0; col < size; col++) {
      if (qr.isDark(row, col)) d += `M${col + 4} ${row + 4}h1v1h-1z`;
    }
  }
  const full = size + 8;
  return (
    <svg class="qr" role="img" aria-label={label} viewBox={`0 0 ${full} ${full}`} width="232" height="232">
      <rect width={full} height={full} fill="#fff" />
      <path d={d} fill="#000" />
    </svg>
  );
}
