#include "core/svg_chart.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace crucible {

std::string html_escape(std::string_view text) {
    std::string out;
    out.reserve(text.size());
    for (char c : text) {
        switch (c) {
            case '&':
                out += "&amp;";
                break;
            case '<':
                out += "&lt;";
                break;
            case '>':
                out += "&gt;";
                break;
            case '"':
                out += "&quot;";
                break;
            case '\'':
                out += "&#39;";
                break;
            default:
                out += c;
        }
    }
    return out;
}

namespace {

std::string num(double v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.1f", v);
    return buf;
}

std::string tick_label(double v) {
    char buf[32];
    if (std::abs(v) >= 1000 || (std::abs(v) < 0.01 && v != 0)) {
        std::snprintf(buf, sizeof buf, "%.2g", v);
    } else {
        std::snprintf(buf, sizeof buf, "%.3g", v);
    }
    return buf;
}

const char* kColours[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"};

}  // namespace

std::string svg_line_chart(const std::string& title, const std::vector<ChartSeries>& series,
                           const std::string& x_label, const std::string& y_label, int width,
                           int height) {
    double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
    for (const ChartSeries& s : series) {
        for (size_t i = 0; i < s.x.size() && i < s.y.size(); i++) {
            if (!std::isfinite(s.x[i]) || !std::isfinite(s.y[i])) continue;
            x0 = std::min(x0, s.x[i]);
            x1 = std::max(x1, s.x[i]);
            y0 = std::min(y0, s.y[i]);
            y1 = std::max(y1, s.y[i]);
        }
    }
    if (!std::isfinite(x0)) x0 = 0, x1 = 1, y0 = 0, y1 = 1;
    if (x1 == x0) x1 = x0 + 1;
    if (y1 == y0) y1 = y0 + 1;
    const double pad = 0.05 * (y1 - y0);
    y0 -= pad;
    y1 += pad;
    const double L = 60, R = width - 15.0, T = 30, B = height - 45.0;
    auto px = [&](double x) { return L + (x - x0) / (x1 - x0) * (R - L); };
    auto py = [&](double y) { return B - (y - y0) / (y1 - y0) * (B - T); };
    std::string svg = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" + std::to_string(width) +
                      "\" height=\"" + std::to_string(height) +
                      "\" font-family=\"sans-serif\" font-size=\"11\">\n";
    svg += "<text x=\"" + num(width / 2.0) +
           "\" y=\"18\" text-anchor=\"middle\" font-size=\"13\">" + html_escape(title) +
           "</text>\n";
    svg += "<rect x=\"" + num(L) + "\" y=\"" + num(T) + "\" width=\"" + num(R - L) +
           "\" height=\"" + num(B - T) + "\" fill=\"none\" stroke=\"#999\"/>\n";
    for (int k = 0; k <= 4; k++) {
        const double yv = y0 + (y1 - y0) * k / 4, xv = x0 + (x1 - x0) * k / 4;
        svg += "<line x1=\"" + num(L) + "\" x2=\"" + num(R) + "\" y1=\"" + num(py(yv)) +
               "\" y2=\"" + num(py(yv)) + "\" stroke=\"#eee\"/>\n";
        svg += "<text x=\"" + num(L - 4) + "\" y=\"" + num(py(yv) + 4) + "\" text-anchor=\"end\">" +
               tick_label(yv) + "</text>\n";
        svg += "<text x=\"" + num(px(xv)) + "\" y=\"" + num(B + 14) + "\" text-anchor=\"middle\">" +
               tick_label(xv) + "</text>\n";
    }
    svg += "<text x=\"" + num((L + R) / 2) + "\" y=\"" + num(height - 8.0) +
           "\" text-anchor=\"middle\">" + html_escape(x_label) + "</text>\n";
    svg += "<text transform=\"translate(14," + num((T + B) / 2) +
           ") rotate(-90)\" text-anchor=\"middle\">" + html_escape(y_label) + "</text>\n";
    for (size_t s = 0; s < series.size(); s++) {
        const size_t pick = series[s].colour >= 0 ? static_cast<size_t>(series[s].colour) : s;
        const char* colour = kColours[pick % (sizeof kColours / sizeof *kColours)];
        std::string path;
        bool pen_down = false;
        const ChartSeries& c = series[s];
        for (size_t i = 0; i < c.x.size() && i < c.y.size(); i++) {
            if (!std::isfinite(c.x[i]) || !std::isfinite(c.y[i])) {
                pen_down = false;
                continue;
            }
            path += (pen_down ? " L" : " M") + num(px(c.x[i])) + " " + num(py(c.y[i]));
            pen_down = true;
        }
        svg += "<path d=\"" + path + "\" fill=\"none\" stroke=\"" + colour +
               "\" stroke-width=\"1.5\"/>\n";
        if (c.x.size() <= 30) {  // few points (e.g. periodic evals): mark them
            for (size_t i = 0; i < c.x.size() && i < c.y.size(); i++) {
                if (!std::isfinite(c.y[i])) continue;
                svg += "<circle cx=\"" + num(px(c.x[i])) + "\" cy=\"" + num(py(c.y[i])) +
                       "\" r=\"3\" fill=\"" + colour + "\"/>\n";
            }
        }
        const double ly = T + 14 + 14.0 * s;
        svg += "<line x1=\"" + num(L + 10) + "\" x2=\"" + num(L + 28) + "\" y1=\"" + num(ly - 4) +
               "\" y2=\"" + num(ly - 4) + "\" stroke=\"" + colour + "\" stroke-width=\"2\"/>\n";
        svg += "<text x=\"" + num(L + 32) + "\" y=\"" + num(ly) + "\">" + html_escape(c.name) +
               "</text>\n";
    }
    svg += "</svg>\n";
    return svg;
}

}  // namespace crucible
